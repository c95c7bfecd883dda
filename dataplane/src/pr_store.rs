//! Stable storage of persistent reservations with APTPL (SPC-4 §5.9.4): one file per device in `<state_dir>/pr/`,
//! replaced atomically (temporary file, fsync, rename, fsync of the directory) so that a crash leaves either the
//! old or the new state, never a torn one. The SCSI core produces the bytes ([`PrSnapshot`]) and takes them back at
//! start ([`polltgt_scsi::LogicalUnit::restore_reservations`]); this module only moves them to and from disk.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use polltgt_scsi::PrSnapshot;

use crate::registry::Registry;

/// Errors reading or writing stored reservations.
#[derive(Debug, thiserror::Error)]
pub enum PrStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("device {device:?}: {path}: {source}; fix or remove the file to start without these reservations")]
    Invalid { device: String, path: PathBuf, source: polltgt_scsi::PrStateError },
}

/// The directory of stored reservations.
#[derive(Debug)]
pub struct PrStore {
    dir: PathBuf,
    /// Newest snapshot written per device: an older one arriving late (another reactor) is not written over it.
    written: Mutex<HashMap<String, u64>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrStoreError + '_ {
    move |source| PrStoreError::Io { path: path.to_path_buf(), source }
}

impl PrStore {
    /// Reservations kept under `state_dir/pr/`. Nothing is created until something is stored.
    pub fn new(state_dir: &Path) -> PrStore {
        PrStore { dir: state_dir.join("pr"), written: Mutex::new(HashMap::new()) }
    }

    /// The file of device `device` (device names are letters, digits, `_-.:`; see the configuration rules).
    pub fn path(&self, device: &str) -> PathBuf {
        self.dir.join(format!("{device}.pr"))
    }

    /// The stored bytes of `device`, if any.
    pub fn load(&self, device: &str) -> Result<Option<Vec<u8>>, PrStoreError> {
        let path = self.path(device);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Stores `snap` for `device` (or removes the file when `snap.data` is `None`), unless a newer snapshot was
    /// stored already. Returns once the change is durable.
    pub fn save(&self, device: &str, snap: &PrSnapshot) -> Result<(), PrStoreError> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.get(device).is_some_and(|&seq| seq >= snap.seq) {
            return Ok(());
        }
        let path = self.path(device);
        match &snap.data {
            Some(data) => {
                std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
                let tmp = self.dir.join(format!(".{device}.pr.tmp"));
                let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
                f.write_all(data).map_err(io(&tmp))?;
                f.sync_all().map_err(io(&tmp))?;
                drop(f);
                std::fs::rename(&tmp, &path).map_err(io(&path))?;
            }
            None => match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    written.insert(device.to_string(), snap.seq);
                    return Ok(());
                }
                Err(e) => return Err(io(&path)(e)),
            },
        }
        // The rename or removal is durable once the directory is.
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        written.insert(device.to_string(), snap.seq);
        Ok(())
    }
}

/// Restores the stored reservations of every device of `registry` (at start, before serving). A file that cannot
/// be read or parsed stops the start with an error naming it: starting without the registrations would silently
/// drop them.
pub fn restore_all(registry: &Registry, store: &PrStore) -> Result<usize, PrStoreError> {
    let mut restored = 0;
    for dev in registry.devices() {
        let Some(bytes) = store.load(&dev.name)? else { continue };
        dev.lu
            .restore_reservations(&bytes)
            .map_err(|source| PrStoreError::Invalid { device: dev.name.clone(), path: store.path(&dev.name), source })?;
        tracing::info!(device = %dev.name, path = %store.path(&dev.name).display(), "persistent reservations restored");
        restored += 1;
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove_and_ordering() {
        let dir = tempfile::tempdir().unwrap();
        let store = PrStore::new(dir.path());
        assert!(store.load("d0").unwrap().is_none());
        store.save("d0", &PrSnapshot { seq: 2, data: Some(b"two".to_vec()) }).unwrap();
        assert_eq!(store.load("d0").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(std::fs::read(dir.path().join("pr/d0.pr")).unwrap(), b"two");
        // An older snapshot arriving late is not written over a newer one.
        store.save("d0", &PrSnapshot { seq: 1, data: Some(b"one".to_vec()) }).unwrap();
        assert_eq!(store.load("d0").unwrap().as_deref(), Some(&b"two"[..]));
        store.save("d0", &PrSnapshot { seq: 3, data: None }).unwrap();
        assert!(store.load("d0").unwrap().is_none());
        store.save("d0", &PrSnapshot { seq: 4, data: None }).unwrap();
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("pr")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let store = PrStore::new(&file);
        let e = store.save("d0", &PrSnapshot { seq: 1, data: Some(b"x".to_vec()) }).unwrap_err();
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
