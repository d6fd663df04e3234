//! Reading and writing framed messages on an async byte stream (a TCP connection): the
//! length prefix and optional CUPS header of [`crate::framing`], with the frame size bounded
//! before anything is buffered.

use std::io;
use std::time::Duration;

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
    match read_first_byte(reader).await? {
        Some(first) => read_rest(reader, framing, first).await.map(Some),
        None => Ok(None),
    }
}

/// [`read_frame`] with deadlines: the next frame must begin within `idle`, and once begun
/// must be whole within `whole` (a peer that sends a length and then trickles or stops is
/// cut off). A missed deadline is a `TimedOut` error: the caller should close.
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    framing: &Framing,
    idle: Duration,
    whole: Duration,
) -> io::Result<Option<Received>> {
    let first = tokio::time::timeout(idle, read_first_byte(reader))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no frame began in time"))??;
    let Some(first) = first else {
        return Ok(None);
    };
    tokio::time::timeout(whole, read_rest(reader, framing, first))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "a frame was not completed in time"))?
        .map(Some)
}

/// The first byte of a frame's length prefix; `None` when the peer closed between frames.
async fn read_first_byte<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<u8>> {
    let mut first = [0u8; 1];
    match reader.read_exact(&mut first).await {
        Ok(_) => Ok(Some(first[0])),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

/// The rest of a frame whose first byte was `first`.
async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    framing: &Framing,
    first: u8,
) -> io::Result<Received> {
    let mut second = [0u8; 1];
    reader.read_exact(&mut second).await?;
    let prefix = [first, second[0]];
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
        Ok(Some(parsed)) => Ok(Received {
            header: parsed.header,
            message: parsed.message.to_vec(),
        }),
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
    let mut frame = Vec::with_capacity(message.len() + 2 + CUPS_HEADER_LENGTH);
    framing
        .write(header, message, &mut frame)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
    writer.write_all(&frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_cut_off_silent_and_trickling_peers() {
        let framing = Framing::default();
        let idle = Duration::from_secs(30);
        let whole = Duration::from_secs(5);
        // Silent: nothing begins within the idle time.
        let (_client, mut server) = tokio::io::duplex(1024);
        let error = read_frame_within(&mut server, &framing, idle, whole)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // Half a frame: a length of 100 and three bytes, then nothing.
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut client, &[0, 100, b'0', b'2', b'0'])
            .await
            .unwrap();
        let error = read_frame_within(&mut server, &framing, idle, whole)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        // A whole frame inside the deadlines is read.
        let (mut client, mut server) = tokio::io::duplex(1024);
        write_frame(&mut client, &framing, None, b"0800ok")
            .await
            .unwrap();
        let frame = read_frame_within(&mut server, &framing, idle, whole)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.message, b"0800ok");
    }

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
