//! TCP framing (`distributed/comm/tcp.py:215-428`): one message is
//! `u64 nosplit | u64 nframes | u64 len × nframes | frame bytes…`, little-endian.

use crate::error::ProtocolError;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The frames of one message; frame 0 is msgpack.
pub type Frames = Vec<Bytes>;

/// Frame codec with ceilings on what a peer may announce. The decoder never reserves memory
/// from a header: it only buffers bytes that actually arrived, and rejects a message whose
/// announced size passes `max_message_bytes` before reading its body.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    /// Largest total payload accepted in one message (the sum of frame lengths).
    pub max_message_bytes: u64,
    /// Most frames accepted in one message (a scatter of many keys has many frames).
    pub max_frames: u64,
    /// Parsed prelude of the message being read, once it is complete.
    pending: Option<Vec<u64>>,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            // Dask shards payloads at 64 MiB but a message may hold many shards; 16 GiB is
            // far beyond any scheduler-bound message while still refusing absurd headers.
            max_message_bytes: 16 << 30,
            max_frames: 1 << 20,
            pending: None,
        }
    }
}

impl FrameCodec {
    /// A codec with explicit limits (tests use small ones).
    pub fn with_limits(max_message_bytes: u64, max_frames: u64) -> Self {
        FrameCodec {
            max_message_bytes,
            max_frames,
            pending: None,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = Frames;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frames>, ProtocolError> {
        if self.pending.is_none() {
            // nosplit (8 bytes) is only a read-size hint for Python; we read the prelude.
            if src.len() < 16 {
                return Ok(None);
            }
            let n = u64::from_le_bytes(src[8..16].try_into().unwrap_or([0; 8]));
            if n == 0 {
                return Err(ProtocolError::NoFrames);
            }
            if n > self.max_frames {
                return Err(ProtocolError::TooManyFrames {
                    announced: n,
                    limit: self.max_frames,
                });
            }
            let too_many = ProtocolError::TooManyFrames {
                announced: n,
                limit: self.max_frames,
            };
            let prelude_len = n
                .checked_mul(8)
                .and_then(|x| x.checked_add(16))
                .and_then(|x| usize::try_from(x).ok())
                .ok_or(too_many)?;
            if src.len() < prelude_len {
                // no reservation from a header: FramedRead grows the buffer as bytes arrive
                return Ok(None);
            }
            let mut lens = Vec::with_capacity(n as usize);
            let mut total: Option<u64> = Some(0);
            for i in 0..n as usize {
                let off = 16 + 8 * i;
                let len = u64::from_le_bytes(src[off..off + 8].try_into().unwrap_or([0; 8]));
                total = total.and_then(|t| t.checked_add(len));
                lens.push(len);
            }
            // an overflowing sum is never acceptable, whatever the limit
            let total = total.filter(|t| usize::try_from(*t).is_ok());
            if total.is_none_or(|t| t > self.max_message_bytes) {
                return Err(ProtocolError::MessageTooLarge {
                    announced: total.unwrap_or(u64::MAX),
                    limit: self.max_message_bytes,
                });
            }
            src.advance(prelude_len);
            self.pending = Some(lens);
        }
        let lens = self.pending.as_deref().unwrap_or_default();
        let total: usize = lens.iter().map(|l| *l as usize).sum();
        if src.len() < total {
            // Grow towards the announced size in bounded steps; the body is under the limit.
            // at most what already arrived (amortized doubling) plus 64 KiB
            src.reserve((total - src.len()).min(src.len().max(64 << 10)));
            return Ok(None);
        }
        let mut body = src.split_to(total).freeze();
        let frames = lens.iter().map(|l| body.split_to(*l as usize)).collect();
        self.pending = None;
        Ok(Some(frames))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frames>, ProtocolError> {
        match self.decode(src)? {
            Some(frames) => Ok(Some(frames)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => Err(ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stream ended inside a message",
            ))),
        }
    }
}

impl Encoder<Frames> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frames: Frames, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        // Everything in one `nosplit` block is always legal (PROTOCOL.md §1.1).
        let prelude = 8 + 8 * frames.len();
        let body: usize = frames.iter().map(Bytes::len).sum();
        dst.reserve(8 + prelude + body);
        dst.put_u64_le((prelude + body) as u64);
        dst.put_u64_le(frames.len() as u64);
        for f in &frames {
            dst.put_u64_le(f.len() as u64);
        }
        for f in &frames {
            dst.put_slice(f);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_pieces() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        let frames = vec![Bytes::from_static(b"\x80"), Bytes::from_static(b"xyz")];
        codec.encode(frames.clone(), &mut buf).ok();
        let all = buf.freeze();
        let mut src = BytesMut::new();
        let mut got = None;
        for b in all.iter() {
            src.put_u8(*b);
            if let Some(f) = codec.decode(&mut src).ok().flatten() {
                got = Some(f);
            }
        }
        assert_eq!(got, Some(frames));
    }

    #[test]
    fn huge_announcement_is_refused_without_allocating() {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        src.put_u64_le(1 << 62);
        src.put_u64_le(1);
        src.put_u64_le(1 << 62);
        assert!(matches!(
            codec.decode(&mut src),
            Err(ProtocolError::MessageTooLarge { .. })
        ));
        let mut src = BytesMut::new();
        src.put_u64_le(0);
        src.put_u64_le(1 << 62);
        assert!(matches!(
            codec.decode(&mut src),
            Err(ProtocolError::TooManyFrames { .. })
        ));
    }
}
