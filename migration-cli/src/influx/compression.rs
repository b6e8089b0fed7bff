//! Gzip over streams of byte chunks, without buffering a whole body.
//!
//! The HTTP client the product shares does not decompress on its own (the query router must relay
//! bodies as the server sent them), and backup files on disk are gzip'd the way `influx backup`
//! writes them. So the CLI needs both directions on streams of [`Bytes`]: decompress a response
//! whose `Content-Encoding` is gzip, and compress a local file that is stored raw before uploading
//! it with `Content-Encoding: gzip`. flate2's *write* side is push based (feed a chunk, take what
//! came out), which fits async streams without a blocking thread.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use futures::{Stream, StreamExt};

/// Push-based gunzip: feed compressed chunks, take the decompressed bytes they completed.
/// Concatenated gzip members are accepted (RFC 1952 allows them; `gzip -c a b` makes them).
pub struct Gunzip {
    decoder: flate2::write::MultiGzDecoder<Vec<u8>>,
}

impl Default for Gunzip {
    fn default() -> Self {
        Gunzip::new()
    }
}

impl Gunzip {
    pub fn new() -> Gunzip {
        Gunzip { decoder: flate2::write::MultiGzDecoder::new(Vec::new()) }
    }

    /// Decompresses `chunk`; returns the bytes now available (possibly none).
    pub fn push(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        self.decoder.write_all(chunk)?;
        Ok(Bytes::from(std::mem::take(self.decoder.get_mut())))
    }

    /// Ends the stream: fails when the input stopped inside a gzip member.
    pub fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(self.decoder.finish()?))
    }
}

/// Push-based gzip: feed raw chunks, take the compressed bytes produced so far.
pub struct Gzip {
    encoder: flate2::write::GzEncoder<Vec<u8>>,
}

impl Gzip {
    /// `level` 1 (fast) to 9 (small); the CLI uses 1 for data in flight (the CPU is the
    /// bottleneck on small machines, not the network) and the `gzip` default (6) for files.
    pub fn new(level: u32) -> Gzip {
        Gzip { encoder: flate2::write::GzEncoder::new(Vec::new(), Compression::new(level)) }
    }

    pub fn push(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        self.encoder.write_all(chunk)?;
        Ok(Bytes::from(std::mem::take(self.encoder.get_mut())))
    }

    pub fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(self.encoder.finish()?))
    }
}

/// Compresses a whole buffer (a write batch) with gzip `level`.
pub fn gzip_bytes(data: &[u8], level: u32) -> std::io::Result<Bytes> {
    let mut g = Gzip::new(level);
    let mut out = g.push(data)?.to_vec();
    out.extend_from_slice(&g.finish()?);
    Ok(Bytes::from(out))
}

/// A stream that either gunzips or gzips another one, chunk by chunk.
enum Codec {
    Gunzip(Gunzip),
    Gzip(Gzip),
}

impl Codec {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Codec::Gunzip(g) => g.push(chunk),
            Codec::Gzip(g) => g.push(chunk),
        }
    }
    fn finish(self) -> std::io::Result<Bytes> {
        match self {
            Codec::Gunzip(g) => g.finish(),
            Codec::Gzip(g) => g.finish(),
        }
    }
}

fn transcode<S, E>(inner: S, codec: Codec) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: From<std::io::Error> + Send,
{
    futures::stream::unfold(Some((inner, codec)), |state| async move {
        let (mut inner, mut codec) = state?;
        loop {
            match inner.next().await {
                Some(Ok(chunk)) => match codec.push(&chunk) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Some((Ok(out), Some((inner, codec)))),
                    Err(e) => return Some((Err(E::from(e)), None)),
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    return match codec.finish() {
                        Ok(out) if out.is_empty() => None,
                        Ok(out) => Some((Ok(out), None)),
                        Err(e) => Some((Err(E::from(e)), None)),
                    };
                }
            }
        }
    })
}

/// Decompresses a gzip'd stream.
pub fn gunzip_stream<S, E>(inner: S) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: From<std::io::Error> + Send,
{
    transcode(inner, Codec::Gunzip(Gunzip::new()))
}

/// Compresses a stream with gzip `level`.
pub fn gzip_stream<S, E>(inner: S, level: u32) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: From<std::io::Error> + Send,
{
    transcode(inner, Codec::Gzip(Gzip::new(level)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn chunks(data: &[u8], size: usize) -> Vec<Result<Bytes, std::io::Error>> {
        data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect()
    }

    #[tokio::test]
    async fn gzip_then_gunzip_in_small_chunks_gives_back_the_input() {
        let input: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let zipped: Vec<u8> = gzip_stream(futures::stream::iter(chunks(&input, 777)), 6)
            .map(|r| r.unwrap().to_vec())
            .concat()
            .await;
        assert!(zipped.len() < input.len() / 4, "compressed {} of {}", zipped.len(), input.len());
        // A standard reader agrees.
        let mut check = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut check).unwrap();
        assert_eq!(check, input);
        let back: Vec<u8> = gunzip_stream(futures::stream::iter(chunks(&zipped, 13)))
            .map(|r| r.unwrap().to_vec())
            .concat()
            .await;
        assert_eq!(back, input);
    }

    #[tokio::test]
    async fn a_truncated_gzip_stream_is_an_error() {
        let zipped = gzip_bytes(&vec![7u8; 100_000], 6).unwrap();
        let cut = &zipped[..zipped.len() / 2];
        let results: Vec<_> = gunzip_stream(futures::stream::iter(chunks(cut, 100))).collect().await;
        assert!(results.last().unwrap().is_err(), "a cut stream must end in an error");
    }

    #[test]
    fn concatenated_members_are_read_whole() {
        let mut both = gzip_bytes(b"hello ", 1).unwrap().to_vec();
        both.extend_from_slice(&gzip_bytes(b"world", 9).unwrap());
        let mut g = Gunzip::new();
        let mut out = g.push(&both).unwrap().to_vec();
        out.extend_from_slice(&g.finish().unwrap());
        assert_eq!(out, b"hello world");
    }
}
