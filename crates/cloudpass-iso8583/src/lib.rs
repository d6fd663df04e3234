//! ISO 8583 for the cloudpass network: a table-driven codec, the network's field profile,
//! BER-TLV for field 55, the private fields' inner structure and TCP framing.
//!
//! A [`Profile`] is data: one [`FieldSpec`] per field number. [`Profile::decode`] and
//! [`Profile::encode`] read that table and contain no field-specific code. The shipped
//! profile is [`profile::cloudpass`], documented field by field in docs/iso8583-profile.md.

pub mod codec;
pub mod emv_data;
pub mod error;
pub mod exchange;
pub mod framing;
#[cfg(feature = "tokio")]
pub mod in_process;
pub mod json;
#[cfg(feature = "tokio")]
pub mod link;
pub mod message;
#[cfg(feature = "tokio")]
pub mod net;
pub mod private;
pub mod profile;
pub mod samples;
#[cfg(feature = "tokio")]
pub mod server;
pub mod spec;
pub mod tlv;

pub use error::{CodecError, ErrorKind, Part};
pub use message::{Message, Mti, MtiError};
pub use spec::{
    BcdPad, BitmapEncoding, Content, Encoding, FieldSpec, Length, LengthUnit, Profile, Sensitivity,
};
