//! Kernel confinement of the check command. The command comes from the
//! operator, but it runs over files a repository writer controls, so it is
//! treated as hostile: it may read only its worktree and the system's
//! toolchain folders, write only its scratch folder, and cannot see or
//! signal graft.
//!
//! Layers, applied in the forked child before `exec`:
//! - Landlock (required; it binds root too): file access limited to the
//!   folders below; `/proc`, graft's data and keys are simply not there.
//! - A new user and PID namespace (where the host allows it): the command
//!   cannot name, signal or ptrace graft, loses every capability on `exec`,
//!   and everything it started dies with it.
//! - No UNIX socket outside its scratch folder (a database's, Docker's):
//!   Landlock from ABI 9, else a mount namespace that covers the socket
//!   folders ([`mounts`]).
//! - The network of `GRAFT_CHECK_NETWORK`: TCP to ports 443 and 80 only
//!   (Landlock), none (a network namespace), or open.
//! - What the host offers is probed before each run and [`plan::decide`]
//!   refuses a host that cannot give every guarantee.
//! - `PR_SET_NO_NEW_PRIVS` (set-uid binaries do not elevate) and no core
//!   dumps.
//!
//! Everything that allocates or opens files is done in the parent
//! ([`prepare`]); the child makes only raw system calls, which is what is
//! safe after `fork` in a multi-threaded process.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

mod mounts;
mod plan;

use mounts::Hide;
pub use plan::{HTTPS_PORTS, Host, NetworkMode, Plan, decide};

/// `GRAFT_CHECK_SANDBOX`: whether the check command must be confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Confine the command; refuse to run it where the host cannot.
    #[default]
    Required,
    /// Run it with only the clean environment and scratch HOME.
    Off,
}

impl FromStr for SandboxMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "required" => Ok(SandboxMode::Required),
            "off" => Ok(SandboxMode::Off),
            other => Err(format!(
                "`{other}` is not a sandbox mode (use required or off)"
            )),
        }
    }
}

impl fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SandboxMode::Required => "required",
            SandboxMode::Off => "off",
        })
    }
}

/// Folders the command may read and execute from: the system toolchain.
/// `/opt`, `/home`, `/root`, `/var`, `/srv`, `/run`, `/proc` and `/sys` are
/// left out: that is where services keep data, keys and environments.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/nix/store",
];

/// What of `/etc` the dynamic loader, name resolution, TLS and user lookup
/// need. Not all of `/etc`: operators keep service secrets there
/// (`/etc/graft/env`, `/etc/ssl/private`, `/etc/shadow`).
pub const SYSTEM_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/ssl/certs",
    "/etc/ssl/openssl.cnf",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/pki/tls/certs",
    "/etc/pki/ca-trust",
    "/etc/crypto-policies",
    "/etc/terminfo",
];

/// Devices the command may write to (and read from).
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];
/// Devices it may only read.
const RANDOM: &[&str] = &["/dev/random", "/dev/urandom"];

/// File access rights the kernel must enforce, or the command does not
/// run: Landlock ABI 3 (Linux 6.2) is the first to cover truncation, without
/// which the command could empty any file graft can write.
const REQUIRED: ABI = ABI::V3;
/// Newer rights (device ioctls, connecting to UNIX sockets) and scopes
/// (signals, abstract sockets) are added where the kernel has them.
const WANTED: ABI = ABI::V10;

/// Inside the user namespace graft's user is this ordinary user, so the
/// command keeps no capability after `exec`.
const INNER_ID: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this host cannot sandbox the check command ({0}); the sandbox needs Linux 6.2 or later \
         with Landlock enabled (lsm= must include landlock). Set GRAFT_CHECK_SANDBOX=off to run \
         the command without it"
    )]
    Unsupported(String),
    #[error(
        "the check sandbox lets the command read {root}, which holds {private}; keep graft's \
         data outside the system folders"
    )]
    Exposes { root: PathBuf, private: PathBuf },
    /// The host lacks a protection the sandbox promises; names the setting
    /// that opts out.
    #[error("{0}")]
    Refused(String),
    #[error("cannot set up the check sandbox: {0}")]
    Setup(String),
}

/// What the command may reach: `read` (read and execute) and `write` (any
/// access, the command's scratch folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
}

impl Policy {
    /// The system folders that exist on this host, plus `scratch`.
    pub fn for_scratch(scratch: &Path) -> Policy {
        Policy {
            read: SYSTEM_DIRS
                .iter()
                .chain(SYSTEM_FILES)
                .map(PathBuf::from)
                .filter(|p| p.exists())
                .collect(),
            write: vec![scratch.to_path_buf()],
        }
    }

    /// Refuses a policy under which the command could read one of
    /// `private` (graft's work folder, its current folder): Landlock grants
    /// whole hierarchies and cannot carve an exception out of `/usr`.
    pub fn check_exposure(&self, private: &[PathBuf]) -> Result<(), SandboxError> {
        for root in &self.read {
            let Ok(root) = root.canonicalize() else {
                continue;
            };
            for path in private {
                let path = path.canonicalize().unwrap_or_else(|_| path.clone());
                if path.starts_with(&root) {
                    return Err(SandboxError::Exposes {
                        root,
                        private: path,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A sandbox ready to be entered by a child process.
pub struct Confinement {
    ruleset: RulesetCreated,
    id_maps: IdMaps,
    plan: Plan,
    hide: Hide,
}

/// The user namespace's `uid_map`/`gid_map` lines, formatted before `fork`.
struct IdMaps {
    uid: Vec<u8>,
    gid: Vec<u8>,
}

/// Probes what the host offers, decides how to confine the command (or
/// refuses, see [`decide`]) and builds the Landlock ruleset for `policy`
/// (in the parent: it opens the folders). `cwd` is where the command
/// starts.
pub fn prepare(
    policy: &Policy,
    network: NetworkMode,
    cwd: &Path,
) -> Result<Confinement, SandboxError> {
    let id_maps = IdMaps::for_this_user();
    let keep: Vec<PathBuf> = policy.read.iter().chain(&policy.write).cloned().collect();
    let hide = Hide::new(mounts::SOCKET_FOLDERS, &keep, cwd)?;
    let host = probe(&id_maps, &hide);
    let plan = decide(host, network)?;
    let ruleset = ruleset(policy, &plan)?;
    Ok(Confinement {
        ruleset,
        id_maps,
        plan,
        hide,
    })
}

fn ruleset(policy: &Policy, plan: &Plan) -> Result<RulesetCreated, SandboxError> {
    let unsupported = |e: landlock::RulesetError| SandboxError::Unsupported(e.to_string());
    let setup = |e: landlock::RulesetError| SandboxError::Setup(e.to_string());
    // What the plan relies on Landlock for is a hard requirement; the rest
    // is taken where the kernel has it.
    let mut required = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED))
        .map_err(unsupported)?;
    if plan.resolve_unix {
        required = required
            .handle_access(AccessFs::ResolveUnix)
            .map_err(unsupported)?;
    }
    if plan.scopes {
        required = required
            .scope(Scope::from_all(ABI::V6))
            .map_err(unsupported)?;
    }
    if plan.tcp_ports.is_some() {
        // Handling bind and connect with rules for connect only: the
        // command can listen on no TCP port at all.
        required = required
            .handle_access(AccessNet::from_all(ABI::V4))
            .map_err(unsupported)?;
    }
    let mut ruleset = required
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(WANTED))
        .map_err(unsupported)?
        .scope(Scope::from_all(WANTED))
        .map_err(unsupported)?
        .create()
        .map_err(unsupported)?;
    for port in plan.tcp_ports.unwrap_or_default() {
        ruleset = ruleset
            .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
            .map_err(setup)?;
    }
    let read_exec = AccessFs::from_read(WANTED);
    for path in &policy.read {
        ruleset = add(ruleset, path, read_exec).map_err(setup)?;
    }
    for path in DEVICES {
        let rw = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
        ruleset = add(ruleset, Path::new(path), rw).map_err(setup)?;
    }
    for path in RANDOM {
        ruleset = add(ruleset, Path::new(path), AccessFs::ReadFile.into()).map_err(setup)?;
    }
    for path in &policy.write {
        ruleset = add(ruleset, path, AccessFs::from_all(WANTED)).map_err(setup)?;
    }
    Ok(ruleset)
}

impl IdMaps {
    /// graft's user and group, as one ordinary user inside.
    fn for_this_user() -> IdMaps {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let inner = |outer: u32| if outer == 0 { INNER_ID } else { outer };
        IdMaps {
            uid: format!("{} {uid} 1\n", inner(uid)).into_bytes(),
            gid: format!("{} {gid} 1\n", inner(gid)).into_bytes(),
        }
    }

    fn write(&self) -> io::Result<()> {
        // setgroups must be denied before an unprivileged gid_map can be
        // written.
        write_file(c"/proc/self/setgroups", b"deny")?;
        write_file(c"/proc/self/uid_map", &self.uid)?;
        write_file(c"/proc/self/gid_map", &self.gid)
    }
}

/// The kernel's Landlock ABI version, 0 without Landlock.
fn landlock_abi() -> i32 {
    const VERSION: libc::c_uint = 1; // LANDLOCK_CREATE_RULESET_VERSION
    // SAFETY: the documented version query: no attribute, no size.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            VERSION,
        )
    };
    i32::try_from(abi).unwrap_or(0).max(0)
}

const PROBE_PID: libc::c_int = 1;
const PROBE_MOUNT: libc::c_int = 2;
const PROBE_NET: libc::c_int = 4;

/// What the host offers: Landlock's ABI, and which namespaces a throwaway
/// child can create and use exactly as the command's will (user namespace,
/// then PID, network, and a mount namespace with the sockets covered).
fn probe(maps: &IdMaps, hide: &Hide) -> Host {
    let mut host = Host {
        landlock_abi: landlock_abi(),
        ..Host::default()
    };
    // SAFETY: the child makes only raw system calls on data prepared
    // above, then _exit; it never returns into Rust code that allocates.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return host;
    }
    if pid == 0 {
        let found = probe_namespaces(maps, hide);
        // SAFETY: ends the probe child without running anything of graft's.
        unsafe { libc::_exit(found) }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return host;
        }
    }
    if libc::WIFEXITED(status) {
        let found = libc::WEXITSTATUS(status);
        host.pid_ns = found & PROBE_PID != 0;
        host.mount_ns = found & PROBE_MOUNT != 0;
        host.net_ns = found & PROBE_NET != 0;
    }
    host
}

/// Runs in the probe child.
fn probe_namespaces(maps: &IdMaps, hide: &Hide) -> libc::c_int {
    // SAFETY: plain system calls in a single-threaded child.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER) != 0 || maps.write().is_err() {
            return 0;
        }
        let mut found = 0;
        if libc::unshare(libc::CLONE_NEWPID) == 0 {
            found |= PROBE_PID;
        }
        if libc::unshare(libc::CLONE_NEWNET) == 0 {
            found |= PROBE_NET;
        }
        if libc::unshare(libc::CLONE_NEWNS) == 0 && hide.apply().is_ok() {
            found |= PROBE_MOUNT;
        }
        found
    }
}

/// Adds `path` with `access`, narrowed to what applies to a file when it
/// is one. A path that vanished is skipped (nothing to grant).
fn add(
    ruleset: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, landlock::RulesetError> {
    let Ok(fd) = PathFd::new(path) else {
        return Ok(ruleset);
    };
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(WANTED)
    };
    ruleset.add_rule(PathBeneath::new(fd, access))
}

impl Confinement {
    /// Makes `command` enter the sandbox between `fork` and `exec`.
    pub fn apply_to(self, command: &mut tokio::process::Command) {
        let mut ruleset = Some(self.ruleset);
        let (maps, plan, hide) = (self.id_maps, self.plan, self.hide);
        // SAFETY: the closure makes only async-signal-safe system calls
        // (setrlimit, unshare, open/write/close, mount, mkdir, chdir, fork,
        // waitpid, prctl, landlock_*); nothing in it allocates on its
        // success path.
        unsafe {
            command.pre_exec(move || enter(&mut ruleset, &maps, &plan, &hide));
        }
    }

    /// How the command will be confined.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// Runs in the child after `fork`.
fn enter(
    ruleset: &mut Option<RulesetCreated>,
    maps: &IdMaps,
    plan: &Plan,
    hide: &Hide,
) -> io::Result<()> {
    no_core_dumps()?;
    if plan.user_ns() {
        enter_namespaces(maps, plan)?;
        // Mounting is over once Landlock is enforced: covers go first.
        if plan.hide_sockets {
            hide.apply()?;
        }
        if plan.pid_ns {
            fork_into_pid_namespace()?;
        }
    }
    let ruleset = ruleset
        .take()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    match ruleset.restrict_self() {
        Ok(status) if status.no_new_privs && status.ruleset != RulesetStatus::NotEnforced => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EPERM)),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

fn no_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit struct.
    check(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) })
}

/// Enters a new user namespace and the namespaces `plan` asks for (owned
/// by it). The probe found them available, so a failure here fails the
/// run: the command never runs with less than the plan.
fn enter_namespaces(maps: &IdMaps, plan: &Plan) -> io::Result<()> {
    let mut flags = libc::CLONE_NEWUSER;
    for (wanted, flag) in [
        (plan.pid_ns, libc::CLONE_NEWPID),
        (plan.hide_sockets, libc::CLONE_NEWNS),
        (plan.net_ns, libc::CLONE_NEWNET),
    ] {
        if wanted {
            flags |= flag;
        }
    }
    // SAFETY: plain system call; the child is single-threaded.
    check(unsafe { libc::unshare(flags) })?;
    // Map graft's user (and group) to one ordinary user.
    maps.write()
}

fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd)?;
    // SAFETY: `data` is valid for its length.
    let written = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if written != data.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process that called `unshare(CLONE_NEWPID)` stays outside the new
/// namespace; its next child is the namespace's first process. So fork:
/// the child goes on to `exec` the command as PID 1 (when it exits, the
/// kernel kills everything it left behind), and this process stays to wait
/// for it and exit the same way, so graft sees the command's status.
fn fork_into_pid_namespace() -> io::Result<()> {
    // SAFETY: fork in a single-threaded child; the parent branch below
    // never returns into Rust code that could allocate.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // If this waiting process is killed (graft's timeout), so is the
        // command, and with it the whole namespace.
        // SAFETY: plain prctl.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
        return Ok(());
    }
    wait_and_exit_like(pid)
}

fn wait_and_exit_like(pid: libc::pid_t) -> ! {
    // Let go of every descriptor (the output pipe, std's exec-error pipe)
    // so graft's spawn returns and sees end-of-output with the command.
    // SAFETY: raw system calls; this process only waits from here on.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            if libc::waitpid(pid, &mut status, 0) == pid {
                break;
            }
            if *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
            libc::_exit(128 + signal);
        }
        libc::_exit(127)
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// At start-up: graft's own memory and `/proc/<pid>/environ` (the
/// encryption key, the App key, tokens) become unreadable to processes of
/// the same user, and graft never dumps core.
pub fn harden_this_process() {
    // SAFETY: plain prctl/setrlimit calls on this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graft_hardens_itself_against_its_own_user() {
        harden_this_process();
        // SAFETY: plain prctl query.
        let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        assert_eq!(dumpable, 0);
    }

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("required".parse(), Ok(SandboxMode::Required));
        assert_eq!("off".parse(), Ok(SandboxMode::Off));
        assert!(
            "no".parse::<SandboxMode>()
                .unwrap_err()
                .contains("required or off")
        );
        assert_eq!(SandboxMode::default().to_string(), "required");
    }

    #[test]
    fn a_private_folder_inside_a_readable_one_is_refused() {
        let policy = Policy {
            read: vec![PathBuf::from("/usr")],
            write: vec![],
        };
        let error = policy
            .check_exposure(&[PathBuf::from("/usr/local/graft-data")])
            .unwrap_err();
        assert!(error.to_string().contains("/usr"), "{error}");
        assert!(
            policy
                .check_exposure(&[PathBuf::from("/srv/graft")])
                .is_ok()
        );
    }

    #[test]
    fn the_unsupported_message_names_the_opt_out() {
        let message = SandboxError::Unsupported("Landlock is not enabled".into()).to_string();
        assert!(message.contains("GRAFT_CHECK_SANDBOX=off"), "{message}");
        assert!(message.contains("Landlock"), "{message}");
    }

    #[test]
    fn the_policy_reads_no_secrets_of_the_host() {
        let policy = Policy::for_scratch(Path::new("/tmp/x"));
        for path in &policy.read {
            for forbidden in [
                "/proc",
                "/etc/shadow",
                "/etc/ssl/private",
                "/root",
                "/var",
                "/opt",
            ] {
                assert!(!path.starts_with(forbidden), "{path:?}");
            }
            assert_ne!(path, Path::new("/etc"));
        }
    }
}
