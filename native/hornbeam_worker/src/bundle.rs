//! The writer's packets: the frames of one writer round go to Erlang as one
//! packet instead of one packet each.
//!
//! Every packet costs the VM a port read task, a message to the worker's
//! Erlang process and a trip through its gen_server loop; a burst of results
//! in one packet pays that once. A bundle is the byte `0` (no encoded term
//! starts with it: they start with the version byte 131) followed by every
//! frame with its own 4-byte length, so Erlang splits it with binary
//! matching and decodes (and, if need be, refuses) each frame on its own,
//! exactly as if it had come alone.

use std::io::{self, Write};

/// The first byte of a bundle packet.
pub const BUNDLE: u8 = 0;

/// A bundle that grows past this many bytes is written and a new one
/// started: the VM's read buffer stays bounded per packet.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;

/// The frames of the round not written yet, in order.
#[derive(Default)]
pub struct Bundle {
    frames: Vec<Vec<u8>>,
    bytes: usize,
}

impl Bundle {
    /// Adds one frame. Writes what is held first when `frame` would take
    /// the bundle past `MAX_BUNDLE_BYTES`.
    pub fn push(&mut self, out: &mut impl Write, frame: Vec<u8>) -> io::Result<()> {
        if !self.frames.is_empty() && self.bytes + frame.len() > MAX_BUNDLE_BYTES {
            self.write(out)?;
        }
        self.bytes += frame.len() + 4;
        self.frames.push(frame);
        Ok(())
    }

    /// Writes the held frames: one as its own packet, more as one bundle.
    pub fn write(&mut self, out: &mut impl Write) -> io::Result<()> {
        let frames = std::mem::take(&mut self.frames);
        self.bytes = 0;
        match frames.as_slice() {
            [] => Ok(()),
            [one] => match u32::try_from(one.len()) {
                Ok(len) => {
                    out.write_all(&len.to_be_bytes())?;
                    out.write_all(one)
                }
                Err(_) => {
                    // the VM never asks for such a result; losing it beats a torn stream
                    eprintln!("hornbeam_worker: dropping a frame over 4 GiB");
                    Ok(())
                }
            },
            many => {
                // (a frame over the limit always travels alone, so these fit)
                let total: usize = 1 + many.iter().map(|f| 4 + f.len()).sum::<usize>();
                let Ok(total) = u32::try_from(total) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "bundle over 4 GiB",
                    ));
                };
                out.write_all(&total.to_be_bytes())?;
                out.write_all(&[BUNDLE])?;
                for frame in many {
                    out.write_all(&(frame.len() as u32).to_be_bytes())?;
                    out.write_all(frame)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hornbeam_core::etf::{self, Term};

    /// The packets of `bytes`, each as its list of frames.
    fn packets(mut bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut packets = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let body = &bytes[4..4 + len];
            packets.push(match body.split_first() {
                Some((&BUNDLE, mut rest)) => {
                    let mut frames = Vec::new();
                    while !rest.is_empty() {
                        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                        frames.push(rest[4..4 + n].to_vec());
                        rest = &rest[4 + n..];
                    }
                    frames
                }
                _ => vec![body.to_vec()],
            });
            bytes = &bytes[4 + len..];
        }
        packets
    }

    fn result(id: i64, size: usize) -> Vec<u8> {
        etf::encode(&Term::tuple(vec![
            Term::atom("result"),
            Term::Int(id),
            Term::binary(vec![7u8; size]),
        ]))
        .expect("encodes")
    }

    #[test]
    fn one_frame_goes_alone_and_several_go_as_one_bundle_in_order() {
        let mut out = Vec::new();
        let mut b = Bundle::default();
        b.push(&mut out, result(1, 3)).unwrap();
        b.write(&mut out).unwrap();
        for id in 2..5 {
            b.push(&mut out, result(id, 3)).unwrap();
        }
        b.write(&mut out).unwrap();
        b.write(&mut out).unwrap(); // nothing held: nothing written
        assert_eq!(
            packets(&out),
            vec![
                vec![result(1, 3)],
                vec![result(2, 3), result(3, 3), result(4, 3)]
            ]
        );
        assert_eq!(out[4], 131, "a lone frame is the plain term");
    }

    #[test]
    fn a_bundle_past_the_size_limit_is_split_and_order_is_kept() {
        let mut out = Vec::new();
        let mut b = Bundle::default();
        let half = MAX_BUNDLE_BYTES / 2;
        for id in 0..5 {
            b.push(&mut out, result(id, half)).unwrap();
        }
        b.push(&mut out, result(5, 1)).unwrap();
        b.write(&mut out).unwrap();
        let sizes: Vec<Vec<usize>> = packets(&out)
            .iter()
            .map(|p| p.iter().map(Vec::len).collect())
            .collect();
        let (big, small) = (result(0, half).len(), result(5, 1).len());
        assert_eq!(
            sizes,
            vec![vec![big], vec![big], vec![big], vec![big], vec![big, small]]
        );
    }
}
