//! The `cloudpass` binary's library half: the wiring of every component ([`app`]) and the
//! sandbox seed ([`sandbox`]), shared by `cloudpass serve` and the black-box tests.

pub mod app;
pub mod data_dir;
pub mod master_key;
pub mod network;
pub mod observe;
pub mod registry;
pub mod sandbox;
pub mod sandbox_phone;
pub mod sandbox_upacp;
