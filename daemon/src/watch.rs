//! Noticing that a mounted file changed. Kubernetes updates Secret and ConfigMap volumes by
//! swapping a `..data` symlink, which inotify on the file itself does not see; comparing the
//! contents on a short interval does, for files this small.

use std::io;
use std::path::{Path, PathBuf};

/// The contents of a set of files as last seen.
#[derive(Debug)]
pub struct FileWatch {
    paths: Vec<PathBuf>,
    seen: Vec<Vec<u8>>,
}

impl FileWatch {
    /// Reads the files once; what is read now is the baseline later reads are compared with.
    pub fn new(paths: &[&Path]) -> io::Result<(Self, Vec<Vec<u8>>)> {
        let contents = read_all(paths)?;
        let watch = FileWatch {
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            seen: contents.clone(),
        };
        Ok((watch, contents))
    }

    /// The files' contents if any of them differs from the last call (or from `new`);
    /// `Ok(None)` if nothing changed. A changed-but-unreadable file is an error each time.
    pub fn changed(&mut self) -> io::Result<Option<Vec<Vec<u8>>>> {
        let refs: Vec<&Path> = self.paths.iter().map(PathBuf::as_path).collect();
        let contents = read_all(&refs)?;
        if contents == self.seen {
            return Ok(None);
        }
        self.seen.clone_from(&contents);
        Ok(Some(contents))
    }
}

impl FileWatch {
    /// Makes the next `changed` report the files again, even if they stay as they are.
    pub fn forget(&mut self) {
        self.seen.clear();
    }
}

fn read_all(paths: &[&Path]) -> io::Result<Vec<Vec<u8>>> {
    paths
        .iter()
        .map(|p| {
            std::fs::read(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_change_once() {
        let dir = std::env::temp_dir().join(format!("hubguard-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a");
        std::fs::write(&file, "one").unwrap();
        let (mut watch, first) = FileWatch::new(&[&file]).unwrap();
        assert_eq!(first, vec![b"one".to_vec()]);
        assert_eq!(watch.changed().unwrap(), None);
        std::fs::write(&file, "two").unwrap();
        assert_eq!(watch.changed().unwrap(), Some(vec![b"two".to_vec()]));
        assert_eq!(watch.changed().unwrap(), None);
        std::fs::remove_file(&file).unwrap();
        assert!(watch.changed().unwrap_err().to_string().contains("/a"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
