//! Reading and writing framed messages on an async byte stream (a TCP connection): the
//! length prefix and optional CUPS header of [`crate::framing`], with the frame size bounded
//! before anything is buffered.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::framing::{CUPS_HEADER_LENGTH, CupsHeader, Framing};

/// One message read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub header: Option<CupsHeader>,
    pub message: Vec<u8>,
}

/// Reads the next framed message; `Ok(None)` when the peer closed the stream between frames.
/// A frame over the limit, or an inconsistent header, is an `InvalidData` error: the caller
/// should close the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    framing: &Framing,
) -> io::Result<Option<Received>> {
    let mut prefix = [0u8; 2];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = usize::from(u16::from_be_bytes(prefix));
    if length == 0 || length > framing.max_frame {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes (limit {})", framing.max_frame),
        ));
    }
    let mut frame = vec![0u8; length + 2];
    frame[..2].copy_from_slice(&prefix);
    reader.read_exact(&mut frame[2..]).await?;
    match framing.read(&frame) {
        Ok(Some(parsed)) => Ok(Some(Received {
            header: parsed.header,
            message: parsed.message.to_vec(),
        })),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "incomplete frame",
        )),
        Err(error) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            error.to_string(),
        )),
    }
}

/// Writes one framed message.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    framing: &Framing,
    header: Option<&CupsHeader>,
    message: &[u8],
) -> io::Result<()> {
    let mut frame = Vec::with_capacity(
        message.len()
            + 2
            + if framing.cups_header {
                CUPS_HEADER_LENGTH
            } else {
                0
            },
    );
    framing
        .write(header, message, &mut frame)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
    writer.write_all(&frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_cross_a_stream() {
        let framing = Framing::default();
        let (mut client, mut server) = tokio::io::duplex(1024);
        write_frame(&mut client, &framing, None, b"0800first")
            .await
            .unwrap();
        write_frame(&mut client, &framing, None, b"0800second")
            .await
            .unwrap();
        drop(client);
        assert_eq!(
            read_frame(&mut server, &framing)
                .await
                .unwrap()
                .unwrap()
                .message,
            b"0800first"
        );
        assert_eq!(
            read_frame(&mut server, &framing)
                .await
                .unwrap()
                .unwrap()
                .message,
            b"0800second"
        );
        assert_eq!(read_frame(&mut server, &framing).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_before_buffering() {
        let framing = Framing {
            max_frame: 16,
            ..Framing::default()
        };
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, &[0xFF, 0xFF])
            .await
            .unwrap();
        let error = read_frame(&mut server, &framing).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
