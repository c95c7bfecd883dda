//! `NullBdev`: reads return zeros, writes are discarded (SPDK's null bdev); for benchmarks and tests.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{
    check_geometry, Bdev, BdevError, BdevInfo, BdevKind, Channel, Completion, Extent, Geometry, Io,
    Op,
};

/// A device of a configured size that stores nothing. Its size can change in place ([`Bdev::resize`] with a
/// number of blocks): every channel sees the new size from its next I/O on.
#[derive(Debug, Clone)]
pub struct NullBdev {
    info: BdevInfo,
    /// Size in bytes, shared with the channels.
    size: Arc<AtomicU64>,
}

impl NullBdev {
    /// A null device of `num_blocks` blocks of `block_size` bytes.
    pub fn new(
        name: impl Into<String>,
        block_size: u32,
        num_blocks: u64,
    ) -> Result<NullBdev, BdevError> {
        check_geometry(block_size, num_blocks)?;
        Ok(NullBdev {
            size: Arc::new(AtomicU64::new(num_blocks * u64::from(block_size))),
            info: BdevInfo {
                name: name.into(),
                block_size,
                num_blocks,
                read_only: false,
                kind: BdevKind::Null,
                rotational: false,
            },
        })
    }
}

impl Bdev for NullBdev {
    fn info(&self) -> BdevInfo {
        let mut info = self.info.clone();
        info.num_blocks = self.size.load(Ordering::Acquire) / u64::from(info.block_size);
        info
    }

    fn block_size(&self) -> u32 {
        self.info.block_size
    }

    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        Ok(Box::new(NullChannel {
            geom: Geometry {
                block_size: self.info.block_size,
                size: self.size.load(Ordering::Acquire),
                read_only: false,
                buf_align: 1,
            },
            size: self.size.clone(),
            done: VecDeque::new(),
        }))
    }

    /// A null device has no backing store: `Some(n)` sets `n` blocks; `None` (re-read the backing store) is
    /// refused.
    fn resize(&self, num_blocks: Option<u64>) -> Result<u64, BdevError> {
        let Some(n) = num_blocks else {
            return Err(BdevError::InvalidConfig(format!(
                "{} has no backing store to re-read its size from",
                self.info.name
            )));
        };
        check_geometry(self.info.block_size, n)?;
        self.size.store(n * u64::from(self.info.block_size), Ordering::Release);
        Ok(n)
    }
}

struct NullChannel {
    geom: Geometry,
    size: Arc<AtomicU64>,
    done: VecDeque<Completion>,
}

impl Channel for NullChannel {
    fn submit(&mut self, io: Io) {
        let Io { tag, mut op } = io;
        self.geom.size = self.size.load(Ordering::Acquire);
        let result = self.geom.check(&op);
        if result.is_ok() {
            match &mut op {
                Op::Read { buf, .. } => buf.fill(0),
                // Nothing is stored, but nothing is deallocated either: report every block mapped.
                Op::Allocation { offset, len, buf } if *len > 0 => {
                    let all = Extent { offset: *offset, len: *len, allocated: true };
                    Extent::encode_all(&[all], buf);
                }
                _ => {}
            }
        }
        self.done.push_back(Completion::of(tag, op, result));
    }

    fn poll(&mut self, done: &mut Vec<Completion>) -> usize {
        let n = self.done.len();
        done.extend(self.done.drain(..));
        n
    }

    fn in_flight(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Buf;

    #[test]
    fn reads_zeros_discards_writes_checks_ranges() {
        let dev = NullBdev::new("null0", 4096, 1 << 20).expect("null");
        assert_eq!(dev.info().size_bytes(), 4 << 30);
        assert_eq!(dev.info().kind, BdevKind::Null);
        let mut ch = dev.open_channel().expect("channel");
        ch.submit(Io {
            tag: 1,
            op: Op::Write {
                offset: 0,
                buf: Buf::from_vec(vec![7; 8192]),
                fua: true,
            },
        });
        ch.submit(Io {
            tag: 2,
            op: Op::Read {
                offset: 0,
                buf: Buf::from_vec(vec![7; 8192]),
            },
        });
        ch.submit(Io {
            tag: 3,
            op: Op::Read {
                offset: 4 << 30,
                buf: Buf::from_vec(vec![7; 4096]),
            },
        });
        ch.submit(Io {
            tag: 4,
            op: Op::Unmap {
                offset: 512,
                len: 4096,
            },
        });
        ch.submit(Io {
            tag: 5,
            op: Op::Flush,
        });
        ch.submit(Io {
            tag: 6,
            op: Op::WriteZeroes {
                offset: 0,
                len: 4 << 30,
            },
        });
        assert_eq!(ch.in_flight(), 6);
        let mut done = Vec::new();
        assert_eq!(ch.poll(&mut done), 6);
        assert_eq!(ch.in_flight(), 0);
        assert!(done[0].result.is_ok() && done[0].buf.as_ref().is_some_and(|b| b.len() == 8192));
        assert!(
            done[1].result.is_ok()
                && done[1]
                    .buf
                    .as_ref()
                    .is_some_and(|b| b.iter().all(|&x| x == 0))
        );
        assert!(matches!(done[2].result, Err(BdevError::OutOfRange { .. })));
        assert!(
            done[2]
                .buf
                .as_ref()
                .is_some_and(|b| b.iter().all(|&x| x == 7)),
            "untouched"
        );
        assert!(matches!(done[3].result, Err(BdevError::Misaligned { .. })));
        assert!(done[4].result.is_ok() && done[5].result.is_ok());
        let tags: Vec<u64> = done.iter().map(|c| c.tag).collect();
        assert_eq!(tags, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn thousand_in_flight() {
        let dev = NullBdev::new("null1", 512, 4096).expect("null");
        let mut ch = dev.open_channel().expect("channel");
        for i in 0..1000u64 {
            ch.submit(Io {
                tag: i,
                op: Op::Read {
                    offset: (i % 4096) * 512,
                    buf: Buf::from_vec(vec![1; 512]),
                },
            });
        }
        assert_eq!(ch.in_flight(), 1000);
        let mut done = Vec::new();
        assert_eq!(ch.poll(&mut done), 1000);
        assert!(done
            .iter()
            .all(|c| c.result.is_ok() && c.buf.as_ref().is_some_and(|b| b[0] == 0)));
        assert!(NullBdev::new("bad", 4095, 1).is_err());
    }

    #[test]
    fn resizes_in_place_for_every_channel() {
        let dev = NullBdev::new("null2", 512, 8).expect("null");
        let mut ch = dev.open_channel().expect("channel");
        let read = |ch: &mut Box<dyn Channel>, offset| {
            ch.submit(Io { tag: 0, op: Op::Read { offset, buf: Buf::from_vec(vec![1; 512]) } });
            let mut done = Vec::new();
            ch.poll(&mut done);
            done.pop().expect("completion").result
        };
        assert!(matches!(read(&mut ch, 8 * 512), Err(BdevError::OutOfRange { .. })));
        assert_eq!(dev.resize(Some(16)).expect("grow"), 16);
        assert_eq!(dev.info().num_blocks, 16);
        assert!(read(&mut ch, 8 * 512).is_ok(), "the open channel sees the new size");
        assert_eq!(dev.resize(Some(4)).expect("shrink"), 4);
        assert!(matches!(read(&mut ch, 4 * 512), Err(BdevError::OutOfRange { .. })));
        assert!(dev.resize(None).is_err(), "nothing to re-read");
        assert!(dev.resize(Some(0)).is_err());
        assert_eq!(dev.info().num_blocks, 4, "a refused resize changes nothing");
    }
}
