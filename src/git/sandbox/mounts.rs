//! Hiding the host's UNIX sockets from the check command where Landlock
//! cannot (before ABI 9 it does not govern connecting to a socket by
//! path): in a mount namespace of its own, the folders sockets live in are
//! covered with empty tmpfs, and only what the command needs under them
//! (its scratch folder, a `/etc/resolv.conf` living in `/run`) is bound
//! back. Built in the parent; [`Hide::apply`] runs in the forked child and
//! makes only raw system calls.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::SandboxError;

/// Where sockets live: databases (`/var/run/postgresql`, `/var/lib/mysql`),
/// Docker (`/run/docker.sock`), desktop sessions (`/tmp/.X11-unix`,
/// `/run/user`), services' own homes. None is readable under Landlock
/// anyway, so covering them takes nothing the command may use.
pub const SOCKET_FOLDERS: &[&str] = &[
    "/run", "/var", "/tmp", "/dev/shm", "/home", "/root", "/srv", "/opt", "/mnt", "/media",
];

/// More paths to bind back than this is a host layout the sandbox does
/// not expect; the child keeps their descriptors in a fixed array.
const MAX_KEEPS: usize = 32;

/// What to cover and what to bring back, as C strings ready for the child.
#[derive(Debug, Default)]
pub struct Hide {
    /// Covered folders, canonical, none inside another.
    covers: Vec<CString>,
    keeps: Vec<Keep>,
    /// The command's working folder, entered again once its own is covered.
    cwd: CString,
}

#[derive(Debug)]
struct Keep {
    path: CString,
    /// Folders to create in the tmpfs above `path`, outermost first.
    parents: Vec<CString>,
    dir: bool,
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| SandboxError::Setup(format!("{} holds a NUL byte", path.display())))
}

impl Hide {
    /// Covers `folders` (those that exist) and binds back `keep`, the
    /// paths the command may use that lie under one of them.
    pub fn new(folders: &[&str], keep: &[PathBuf], cwd: &Path) -> Result<Hide, SandboxError> {
        let mut covers: Vec<PathBuf> = folders
            .iter()
            .filter_map(|f| Path::new(f).canonicalize().ok())
            .filter(|p| p.is_dir() && p != Path::new("/"))
            .collect();
        covers.sort();
        covers.dedup();
        let mut outermost: Vec<PathBuf> = Vec::new();
        for cover in covers {
            if !outermost.iter().any(|o| cover.starts_with(o)) {
                outermost.push(cover);
            }
        }
        let mut keeps = Vec::new();
        for path in keep {
            let Ok(path) = path.canonicalize() else {
                continue;
            };
            let Some(cover) = outermost.iter().find(|c| path.starts_with(c)) else {
                continue;
            };
            if &path == cover {
                return Err(SandboxError::Setup(format!(
                    "{} would be hidden from the check command",
                    path.display()
                )));
            }
            let parents = path
                .ancestors()
                .skip(1)
                .take_while(|a| a != cover)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(c_path)
                .collect::<Result<_, _>>()?;
            keeps.push(Keep {
                dir: path.is_dir(),
                path: c_path(&path)?,
                parents,
            });
        }
        if keeps.len() > MAX_KEEPS {
            return Err(SandboxError::Setup(format!(
                "more than {MAX_KEEPS} paths to bind back into the check sandbox"
            )));
        }
        Ok(Hide {
            covers: outermost
                .iter()
                .map(|c| c_path(c))
                .collect::<Result<_, _>>()?,
            keeps,
            cwd: c_path(cwd)?,
        })
    }

    /// In the child, right after it entered a new user and mount namespace
    /// and before Landlock (which forbids mounting once enforced).
    pub fn apply(&self) -> io::Result<()> {
        // Nothing done here may reach graft's mount namespace.
        mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE)?;
        // Descriptors of what is brought back, opened in this namespace
        // (a bind mount's source must be one of its mounts) before the
        // covers hide them.
        let mut fds = [-1; MAX_KEEPS];
        for (fd, keep) in fds.iter_mut().zip(&self.keeps) {
            // SAFETY: a NUL-terminated path.
            *fd = unsafe {
                libc::open(
                    keep.path.as_ptr(),
                    libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            };
            check(*fd)?;
        }
        for cover in &self.covers {
            mount(
                Some(c"tmpfs"),
                cover,
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
            )?;
        }
        for (fd, keep) in fds.iter().zip(&self.keeps) {
            for parent in &keep.parents {
                make(parent, true)?;
            }
            make(&keep.path, keep.dir)?;
            let mut buf = [0u8; 32];
            let source = fd_path(*fd, &mut buf)?;
            mount(Some(source), &keep.path, None, libc::MS_BIND | libc::MS_REC)?;
            // SAFETY: our own descriptor.
            unsafe { libc::close(*fd) };
        }
        // SAFETY: a NUL-terminated path.
        check(unsafe { libc::chdir(self.cwd.as_ptr()) })
    }
}

fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: NUL-terminated strings or null, no data argument.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            std::ptr::null(),
        )
    })
}

/// Creates a folder or an empty file to mount over; one already there is
/// fine.
fn make(path: &CStr, dir: bool) -> io::Result<()> {
    // SAFETY: NUL-terminated paths; the descriptor is closed at once.
    let result = unsafe {
        if dir {
            libc::mkdir(path.as_ptr(), 0o755)
        } else {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            fd
        }
    };
    if result < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `/proc/self/fd/<fd>` written into `buf` without allocating.
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> io::Result<&CStr> {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[PREFIX.len() + i] = digits[count - 1 - i];
    }
    buf[PREFIX.len() + count] = 0;
    CStr::from_bytes_with_nul(&buf[..=PREFIX.len() + count])
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_paths_are_written_without_allocating() {
        let mut buf = [0u8; 32];
        assert_eq!(fd_path(7, &mut buf).unwrap(), c"/proc/self/fd/7");
        assert_eq!(fd_path(1234, &mut buf).unwrap(), c"/proc/self/fd/1234");
        assert_eq!(fd_path(0, &mut buf).unwrap(), c"/proc/self/fd/0");
    }

    #[test]
    fn only_outermost_folders_are_covered_and_needed_paths_come_back() {
        let scratch = tempfile::tempdir().unwrap();
        let inside = scratch.path().join("a/b");
        std::fs::create_dir_all(&inside).unwrap();
        let root = scratch.path().canonicalize().unwrap();
        let hide = Hide::new(
            &[
                root.to_str().unwrap(),
                root.join("a").to_str().unwrap(),
                "/nonexistent-x",
            ],
            &[inside.clone(), PathBuf::from("/usr")],
            &inside,
        )
        .unwrap();
        assert_eq!(hide.covers, vec![c_path(&root).unwrap()]);
        assert_eq!(hide.keeps.len(), 1, "/usr is not under a cover");
        let keep = &hide.keeps[0];
        assert!(keep.dir);
        assert_eq!(keep.path, c_path(&root.join("a/b")).unwrap());
        assert_eq!(keep.parents, vec![c_path(&root.join("a")).unwrap()]);
        // A cover that is itself needed would hide it: refused.
        assert!(
            Hide::new(
                &[root.to_str().unwrap()],
                std::slice::from_ref(&root),
                &root
            )
            .is_err()
        );
    }
}
