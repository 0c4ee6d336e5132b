//! Whether the running kernel can enforce fsguard's BPF LSM programs, and if not, why.
//!
//! Two things are needed: the BPF LSM must be active (`bpf` in `/sys/kernel/security/lsm`,
//! i.e. `CONFIG_BPF_LSM=y` and `bpf` in `CONFIG_LSM` or the `lsm=` boot parameter) and the
//! kernel must expose its BTF (`/sys/kernel/btf/vmlinux`, `CONFIG_DEBUG_INFO_BTF=y`), which
//! LSM programs are attached by. Passing this check does not guarantee that loading works:
//! a kernel may still refuse (the development hosts answer EPERM even to root).

use std::io;
use std::path::{Path, PathBuf};

/// securityfs file listing the active LSMs, comma-separated.
pub const LSM_LIST_PATH: &str = "/sys/kernel/security/lsm";
/// The kernel's own BTF.
pub const KERNEL_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Why the running kernel cannot enforce fsguard's programs.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    /// The active-LSM list could not be read.
    #[error(
        "cannot read the active LSM list {path} (securityfs not mounted at \
         /sys/kernel/security, or a kernel without LSM support)"
    )]
    LsmListUnreadable {
        /// The file that could not be read.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// The BPF LSM is not among the active LSMs.
    #[error(
        "the BPF LSM is not active (active LSMs: {active:?}); it needs a kernel built with \
         CONFIG_BPF_LSM=y and `bpf` in CONFIG_LSM or in the `lsm=` boot parameter"
    )]
    BpfLsmInactive {
        /// The active LSM list as the kernel reported it.
        active: String,
    },
    /// The kernel does not expose its BTF.
    #[error("kernel BTF {path} is unavailable (kernel built without CONFIG_DEBUG_INFO_BTF=y?)")]
    NoKernelBtf {
        /// The BTF file that could not be opened.
        path: PathBuf,
        /// Why opening failed.
        #[source]
        source: io::Error,
    },
}

/// Checks the running kernel (see the module docs); `Err` says why it cannot enforce.
pub fn check_support() -> Result<(), Unsupported> {
    check_support_at(Path::new(LSM_LIST_PATH), Path::new(KERNEL_BTF_PATH))
}

/// [`check_support`] against other files (for tests, or a differently mounted securityfs).
pub fn check_support_at(lsm_list: &Path, kernel_btf: &Path) -> Result<(), Unsupported> {
    let active =
        std::fs::read_to_string(lsm_list).map_err(|source| Unsupported::LsmListUnreadable {
            path: lsm_list.to_owned(),
            source,
        })?;
    if !lsm_list_has_bpf(&active) {
        return Err(Unsupported::BpfLsmInactive {
            active: active.trim().to_owned(),
        });
    }
    std::fs::File::open(kernel_btf).map_err(|source| Unsupported::NoKernelBtf {
        path: kernel_btf.to_owned(),
        source,
    })?;
    Ok(())
}

/// Whether a `/sys/kernel/security/lsm` list (e.g. `"lockdown,capability,yama,bpf"`) names
/// the BPF LSM.
pub fn lsm_list_has_bpf(list: &str) -> bool {
    list.trim().split(',').any(|lsm| lsm.trim() == "bpf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsm_list_parsing() {
        assert!(lsm_list_has_bpf(
            "lockdown,capability,landlock,yama,apparmor,tomoyo,bpf"
        ));
        assert!(lsm_list_has_bpf("bpf\n"));
        assert!(lsm_list_has_bpf("capability, bpf ,yama"));
        assert!(!lsm_list_has_bpf("lockdown,capability,yama,apparmor"));
        assert!(!lsm_list_has_bpf("bpfx,xbpf"));
        assert!(!lsm_list_has_bpf(""));
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fsguard-support-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reasons_for_each_missing_piece() {
        let dir = scratch("reasons");
        let lsm = dir.join("lsm");
        let btf = dir.join("vmlinux");

        let err = check_support_at(&lsm, &btf).unwrap_err();
        assert!(
            matches!(err, Unsupported::LsmListUnreadable { .. }),
            "{err}"
        );

        std::fs::write(&lsm, "capability,yama\n").unwrap();
        let err = check_support_at(&lsm, &btf).unwrap_err();
        assert!(
            matches!(&err, Unsupported::BpfLsmInactive { active } if active == "capability,yama"),
            "{err}"
        );
        assert!(err.to_string().contains("CONFIG_BPF_LSM"), "{err}");

        std::fs::write(&lsm, "capability,yama,bpf").unwrap();
        let err = check_support_at(&lsm, &btf).unwrap_err();
        assert!(matches!(err, Unsupported::NoKernelBtf { .. }), "{err}");

        std::fs::write(&btf, b"\x9f\xeb").unwrap();
        check_support_at(&lsm, &btf).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Where the lockdown LSM shows and takes its mode.
pub const LOCKDOWN_FILE: &str = "/sys/kernel/security/lockdown";

/// What raising the kernel's lockdown did.
#[derive(Debug, PartialEq, Eq)]
pub enum Lockdown {
    /// Raised from `none` to `integrity` now.
    Raised,
    /// Already `integrity` or `confidentiality` (it can't be lowered until reboot).
    Already(String),
    /// The kernel has no lockdown LSM (no `/sys/kernel/security/lockdown`).
    Unavailable,
}

/// The mode in brackets in the lockdown file's text (`none [integrity] confidentiality`).
pub fn lockdown_mode(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let end = start + text[start..].find(']')?;
    Some(&text[start..end])
}

/// Whether the magic SysRq key can signal processes: `kernel.sysrq` at 1 (everything) or with
/// its signalling bit (0x40: e, i, f, the OOM killer), or `sysrq_always_enabled` on the kernel
/// command line. A keyboard, an injected one included (`/dev/uinput`), then SIGKILLs every
/// process, which no hook sees; the guard refuses writes of `kernel.sysrq` from level 1, so a
/// raise above 0 refuses while it is so. `sysrq` and `cmdline` are the two files' contents.
pub fn sysrq_signals(sysrq: &str, cmdline: &str) -> Option<String> {
    let always = cmdline
        .split_whitespace()
        .any(|w| w == "sysrq_always_enabled" || w == "sysrq_always_enabled=1");
    if always {
        return Some(
            "the kernel command line has sysrq_always_enabled: the magic SysRq key (a keyboard, an injected one included) can signal every process; boot without it"
                .into(),
        );
    }
    let value: u32 = sysrq.trim().parse().unwrap_or(1);
    (value == 1 || value & 0x40 != 0).then(|| {
        format!(
            "kernel.sysrq is {value}: the magic SysRq key (a keyboard, an injected one included) can signal every process; `sysctl kernel.sysrq={}` (its bits without 0x40)",
            if value == 1 { 438 } else { value & !0x40 }
        )
    })
}

/// `sysrq_signals` of this machine (an unreadable `kernel.sysrq` counts as 1).
pub fn sysrq_state() -> Option<String> {
    let sysrq = std::fs::read_to_string("/proc/sys/kernel/sysrq").unwrap_or_else(|_| "1".into());
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    sysrq_signals(&sysrq, &cmdline)
}

/// Switches process accounting off (acct(2) with no file; a no-op when it is off) in this
/// process's pid namespace and in every other one a process in /proc is in: accounting is
/// per pid namespace, so a container's (or one root made for the purpose) would go on.
pub fn stop_process_accounting() -> std::io::Result<()> {
    // SAFETY: acct with a null path only turns accounting off; no memory is passed.
    if unsafe { libc::acct(std::ptr::null()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut seen = std::collections::HashSet::new();
    seen.insert(std::fs::read_link("/proc/self/ns/pid")?);
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let pid = name.to_string_lossy();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let ns = entry.path().join("ns/pid");
        let (link, file) = match (std::fs::read_link(&ns), std::fs::File::open(&ns)) {
            (Ok(link), Ok(file)) => (link, file),
            // A capsule's member (the guard lets nobody outside look at it): fine in this
            // pid namespace, whose accounting is off; not in one of its own (NSpid, which
            // `status` shows to all, has a second number), which can't be reached.
            (Err(e), _) | (_, Err(e))
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    && nested_pid_ns(&entry.path()) =>
            {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("process {pid} is in a pid namespace of its own that may not be looked at (a capsule's member?): process accounting there can't be switched off"),
                ));
            }
            // Gone meanwhile, a kernel thread's, or a member in this namespace.
            _ => continue,
        };
        if seen.contains(&link) {
            continue;
        }
        match stop_accounting_in(&file) {
            Ok(()) => {
                seen.insert(link);
            }
            // The process left meanwhile (and its namespace may be gone with it): another
            // member, if there is one, is asked later in the walk.
            Err(_) if std::fs::read_link(&ns).ok().as_ref() != Some(&link) => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "switch process accounting off in the pid namespace of process {pid}: {e}"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Whether the process at `/proc/PID` is in a pid namespace below this one (`NSpid:` lists
/// its pid in each namespace it is in). Unreadable: yes (fail closed).
fn nested_pid_ns(proc_dir: &Path) -> bool {
    match std::fs::read_to_string(proc_dir.join("status")) {
        Ok(status) => status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|v| v.split_whitespace().count() > 1),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// acct(NULL) in the pid namespace `ns` (a descriptor of /proc/PID/ns/pid): a child joins it
/// (setns makes the joiner's children members) and its own child switches accounting off.
fn stop_accounting_in(ns: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = ns.as_raw_fd();
    // SAFETY: between fork and _exit the children make only system calls (setns, fork, acct,
    // waitpid: async-signal-safe), allocate nothing and touch no lock of this process.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: as above, in the child.
        unsafe {
            if libc::setns(fd, libc::CLONE_NEWPID) != 0 {
                libc::_exit(10);
            }
            let member = libc::fork();
            if member == 0 {
                libc::_exit(if libc::acct(std::ptr::null()) == 0 {
                    0
                } else {
                    11
                });
            }
            if member < 0 {
                // A namespace whose init has exited takes no new member: nothing runs there.
                libc::_exit(if *libc::__errno_location() == libc::ENOMEM {
                    0
                } else {
                    12
                });
            }
            let mut status = 0;
            libc::waitpid(member, &mut status, 0);
            libc::_exit(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                13
            });
        }
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a live local.
    if unsafe { libc::waitpid(child, &mut status, 0) } != child {
        return Err(std::io::Error::last_os_error());
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 10) => Err(std::io::Error::other("could not join it (setns)")),
        (true, 11) => Err(std::io::Error::other("acct(2) failed there")),
        _ => Err(std::io::Error::other(format!(
            "the helper process ended with status {status:#x}"
        ))),
    }
}

/// Raises the kernel lockdown to `integrity` (no unsigned modules, no /dev/mem writes, no
/// unsigned kexec), so the guard can't be removed by loading kernel code. Lockdown can only
/// be raised; it lasts until reboot.
pub fn raise_lockdown() -> std::io::Result<Lockdown> {
    let path = Path::new(LOCKDOWN_FILE);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lockdown::Unavailable),
        Err(e) => return Err(e),
    };
    match lockdown_mode(&text) {
        Some("none") => {
            std::fs::write(path, "integrity")?;
            Ok(Lockdown::Raised)
        }
        Some(mode) => Ok(Lockdown::Already(mode.to_string())),
        None => Err(std::io::Error::other(format!(
            "{LOCKDOWN_FILE}: unexpected content {text:?}"
        ))),
    }
}

#[cfg(test)]
mod lockdown_tests {
    use super::lockdown_mode;

    #[test]
    fn the_bracketed_mode_is_the_current_one() {
        assert_eq!(
            lockdown_mode("[none] integrity confidentiality\n"),
            Some("none")
        );
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality"),
            Some("integrity")
        );
        assert_eq!(lockdown_mode("none integrity"), None);
    }
}

#[cfg(test)]
mod sysrq_tests {
    use super::sysrq_signals;

    #[test]
    fn sysrq_signals_when_everything_or_the_signal_bit_is_on() {
        assert!(sysrq_signals("438\n", "quiet").is_none());
        assert!(sysrq_signals("0\n", "").is_none());
        assert!(sysrq_signals("1\n", "").unwrap().contains("438"));
        assert!(sysrq_signals("64\n", "").unwrap().contains("=0"));
        assert!(sysrq_signals("0\n", "ro sysrq_always_enabled").is_some());
    }
}
