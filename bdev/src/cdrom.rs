//! A CD-ROM drive (SCST `vcdrom`): an ISO image file as a read-only medium of 2048-byte blocks that can be
//! changed or removed while the bdev is in use.
//!
//! The medium is a [`FileBdev`] opened read-only. [`Bdev::change_medium`] opens the new image first (so a bad path
//! changes nothing), then replaces the medium and bumps a generation. Each reactor's [`CdromChannel`] notices the
//! new generation at its next submission and opens a channel on the new medium; its channel on the old medium is
//! kept until the I/Os submitted there have completed. Without a medium, I/Os complete at once with
//! `ENOMEDIUM` (the SCSI layer answers NOT READY, MEDIUM NOT PRESENT before that happens).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::{Bdev, BdevError, BdevInfo, BdevKind, Channel, Completion, FileBdev, FileOptions, Io};

/// Logical block length of a CD-ROM (MMC: 2048-byte user data of a Mode 1 sector).
pub const CDROM_BLOCK_SIZE: u32 = 2048;

struct Shared {
    name: String,
    medium: RwLock<Option<Arc<FileBdev>>>,
    /// Bumped by every medium change.
    generation: AtomicU64,
}

impl Shared {
    fn medium(&self) -> Option<Arc<FileBdev>> {
        self.medium.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A CD-ROM drive with an optional ISO image.
pub struct CdromBdev {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CdromBdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdromBdev").field("name", &self.shared.name).field("medium", &self.shared.medium()).finish()
    }
}

fn open_image(name: &str, path: &Path) -> Result<Arc<FileBdev>, BdevError> {
    Ok(Arc::new(FileBdev::open(name, path, CDROM_BLOCK_SIZE, true, FileOptions::default())?))
}

impl CdromBdev {
    /// A drive named `name` holding the image at `path`, or empty.
    pub fn new(name: &str, path: Option<&Path>) -> Result<CdromBdev, BdevError> {
        let medium = path.map(|p| open_image(name, p)).transpose()?;
        Ok(CdromBdev {
            shared: Arc::new(Shared {
                name: name.to_string(),
                medium: RwLock::new(medium),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Whether an image is loaded.
    pub fn has_medium(&self) -> bool {
        self.shared.medium().is_some()
    }
}

impl Bdev for CdromBdev {
    fn block_size(&self) -> u32 {
        CDROM_BLOCK_SIZE
    }

    fn info(&self) -> BdevInfo {
        let medium = self.shared.medium();
        BdevInfo {
            name: self.shared.name.clone(),
            block_size: CDROM_BLOCK_SIZE,
            num_blocks: medium.map_or(0, |m| m.info().num_blocks),
            read_only: true,
            kind: BdevKind::File,
            rotational: true,
        }
    }

    fn open_channel(&self) -> Result<Box<dyn Channel>, BdevError> {
        let mut ch = CdromChannel {
            shared: Arc::clone(&self.shared),
            generation: u64::MAX,
            current: None,
            retired: Vec::new(),
            failed: Vec::new(),
        };
        ch.refresh()?;
        Ok(Box::new(ch))
    }

    fn change_medium(&self, path: Option<&Path>) -> Result<u64, BdevError> {
        let new = path.map(|p| open_image(&self.shared.name, p)).transpose()?;
        let blocks = new.as_ref().map_or(0, |m| m.info().num_blocks);
        let mut medium = self.shared.medium.write().unwrap_or_else(PoisonError::into_inner);
        *medium = new;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        Ok(blocks)
    }
}

/// A reactor's channel on the drive: a channel on the current medium, and those on earlier media still finishing
/// I/Os.
pub struct CdromChannel {
    shared: Arc<Shared>,
    /// The medium generation `current` belongs to.
    generation: u64,
    current: Option<Box<dyn Channel>>,
    retired: Vec<Box<dyn Channel>>,
    /// Completions of I/Os that found no medium.
    failed: Vec<Completion>,
}

impl CdromChannel {
    /// Follows a medium change: a channel on the new medium; the old one retires.
    fn refresh(&mut self) -> Result<(), BdevError> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return Ok(());
        }
        let medium = {
            // Read under the lock so that the medium and its generation belong together.
            let m = self.shared.medium.read().unwrap_or_else(PoisonError::into_inner);
            self.generation = self.shared.generation.load(Ordering::Acquire);
            m.clone()
        };
        if let Some(old) = self.current.take() {
            if old.in_flight() > 0 {
                self.retired.push(old);
            }
        }
        self.current = medium.map(|m| m.open_channel()).transpose()?;
        Ok(())
    }
}

impl Channel for CdromChannel {
    fn submit(&mut self, io: Io) {
        if let Err(e) = self.refresh() {
            self.failed.push(Completion::of(io.tag, io.op, Err(e)));
            return;
        }
        match self.current.as_mut() {
            Some(ch) => ch.submit(io),
            None => {
                let err = BdevError::Io(std::io::Error::from_raw_os_error(libc::ENOMEDIUM));
                self.failed.push(Completion::of(io.tag, io.op, Err(err)));
            }
        }
    }

    fn poll(&mut self, done: &mut Vec<Completion>) -> usize {
        let mut n = self.failed.len();
        done.append(&mut self.failed);
        if let Some(ch) = self.current.as_mut() {
            n += ch.poll(done);
        }
        for ch in &mut self.retired {
            n += ch.poll(done);
        }
        self.retired.retain(|ch| ch.in_flight() > 0);
        n
    }

    fn in_flight(&self) -> usize {
        self.failed.len()
            + self.current.as_ref().map_or(0, |c| c.in_flight())
            + self.retired.iter().map(|c| c.in_flight()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Buf, Op};
    use std::io::Write;

    fn image(dir: &Path, name: &str, fill: u8, blocks: usize) -> std::path::PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(&vec![fill; blocks * CDROM_BLOCK_SIZE as usize]).expect("write");
        p
    }

    fn read(ch: &mut dyn Channel, lba: u64) -> Result<Vec<u8>, BdevError> {
        ch.submit(Io { tag: lba, op: Op::Read { offset: lba * 2048, buf: Buf::zeroed(2048) } });
        let mut done = Vec::new();
        let start = std::time::Instant::now();
        while done.is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
            ch.poll(&mut done);
        }
        let c = done.pop().expect("a completion");
        c.result.map(|()| c.buf.map(|b| b.to_vec()).unwrap_or_default())
    }

    #[test]
    fn reads_the_medium_and_follows_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = image(dir.path(), "a.iso", 0xAA, 4);
        let b = image(dir.path(), "b.iso", 0xBB, 8);
        let cd = CdromBdev::new("cd", Some(&a)).expect("cd");
        assert_eq!((cd.info().block_size, cd.info().num_blocks, cd.info().read_only), (2048, 4, true));
        let mut ch = cd.open_channel().expect("channel");
        assert_eq!(read(ch.as_mut(), 3).expect("read"), vec![0xAA; 2048]);
        assert!(matches!(read(ch.as_mut(), 4), Err(BdevError::OutOfRange { .. })));
        // Writes are refused.
        ch.submit(Io { tag: 1, op: Op::Write { offset: 0, buf: Buf::zeroed(2048), fua: false } });
        let mut done = Vec::new();
        while done.is_empty() {
            ch.poll(&mut done);
        }
        assert!(matches!(done[0].result, Err(BdevError::ReadOnly)));
        // A new medium: the open channel reads it.
        assert_eq!(cd.change_medium(Some(&b)).expect("change"), 8);
        assert_eq!(cd.info().num_blocks, 8);
        assert_eq!(read(ch.as_mut(), 7).expect("read"), vec![0xBB; 2048]);
        // No medium: ENOMEDIUM.
        assert_eq!(cd.change_medium(None).expect("eject"), 0);
        assert!(!cd.has_medium());
        assert_eq!(cd.info().num_blocks, 0);
        match read(ch.as_mut(), 0) {
            Err(BdevError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOMEDIUM)),
            other => panic!("{other:?}"),
        }
        // A bad path changes nothing.
        assert!(cd.change_medium(Some(&dir.path().join("missing.iso"))).is_err());
        assert!(!cd.has_medium());
        assert_eq!(cd.change_medium(Some(&a)).expect("load"), 4);
        assert_eq!(read(ch.as_mut(), 0).expect("read"), vec![0xAA; 2048]);
        assert_eq!(ch.in_flight(), 0);
    }
}
