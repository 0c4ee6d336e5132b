//! The smoke program (`bpf/smoke.bpf.c`): an `lsm/file_open` program refusing write-opens of
//! the inodes in its `deny_inodes` map. It is the minimal end-to-end proof that fsguard can
//! enforce on a kernel, exercised by the `fsguard-smoke` binary inside the test guest.

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::lsm::LsmLink;
use aya::Btf;

use crate::loader::LsmObject;
use crate::shared::{fsguard_config, fsguard_inode_key, fsguard_stats, FSGUARD_DENY_WRITE};
use crate::{objects, Error, Result};

/// Object name (`bpf/smoke.bpf.c`).
pub const OBJECT: &str = "smoke";
/// The program's C function name.
pub const PROGRAM: &str = "smoke_file_open";
/// The LSM hook it attaches to.
pub const HOOK: &str = "file_open";

const CONFIG_MAP: &str = "config";
const DENY_MAP: &str = "deny_inodes";
const STATS_MAP: &str = "stats";

/// The smoke program loaded in the kernel, with its maps; attached or not.
///
/// Dropping it detaches the program and releases the maps.
pub struct Smoke {
    // Field order is drop order: detach before the program and maps go away.
    link: Option<LsmLink>,
    config: Array<MapData, fsguard_config>,
    deny: HashMap<MapData, fsguard_inode_key, u32>,
    stats: PerCpuArray<MapData, fsguard_stats>,
    object: LsmObject,
}

impl std::fmt::Debug for Smoke {
    // aya's Array/PerCpuArray handles are not Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smoke")
            .field("object", &self.object)
            .field("attached", &self.is_attached())
            .finish_non_exhaustive()
    }
}

impl Smoke {
    /// Loads the program into the kernel (not attached) and writes an enforcing config, so it
    /// acts as soon as it is attached and a key is denied.
    pub fn load(btf: &Btf) -> Result<Self> {
        let mut object = LsmObject::load(OBJECT, objects::SMOKE, btf)?;
        object.load_lsm(PROGRAM, HOOK, btf)?;
        let mut smoke = Self {
            link: None,
            config: object.take_map(CONFIG_MAP)?,
            deny: object.take_map(DENY_MAP)?,
            stats: object.take_map(STATS_MAP)?,
            object,
        };
        smoke.set_config(&fsguard_config::enforcing())?;
        Ok(smoke)
    }

    /// Replaces the config (`FSGUARD_LEVEL_OFF` makes the attached program allow everything).
    pub fn set_config(&mut self, config: &fsguard_config) -> Result<()> {
        self.config.set(0, config, 0).map_err(|source| Error::Map {
            op: "write the config to",
            map: CONFIG_MAP,
            source,
        })
    }

    /// Refuses opens for write of the inode `key` (takes effect at once if attached).
    pub fn deny_write(&mut self, key: &fsguard_inode_key) -> Result<()> {
        self.deny
            .insert(key, FSGUARD_DENY_WRITE, 0)
            .map_err(|source| Error::Map {
                op: "insert into",
                map: DENY_MAP,
                source,
            })
    }

    /// Removes the rule for `key`.
    pub fn forget(&mut self, key: &fsguard_inode_key) -> Result<()> {
        self.deny.remove(key).map_err(|source| Error::Map {
            op: "delete from",
            map: DENY_MAP,
            source,
        })
    }

    /// Attaches the program to its hook.
    pub fn attach(&mut self) -> Result<()> {
        if self.link.is_some() {
            return Err(Error::AttachState {
                program: PROGRAM,
                state: "already attached",
            });
        }
        self.link = Some(self.object.attach_lsm(PROGRAM, HOOK)?);
        Ok(())
    }

    /// Detaches the program; it stays loaded and can be attached again.
    pub fn detach(&mut self) -> Result<()> {
        // Dropping the link closes its fd, the last reference to the bpf_link, which detaches
        // the program from the hook synchronously.
        match self.link.take() {
            Some(link) => {
                drop(link);
                Ok(())
            }
            None => Err(Error::AttachState {
                program: PROGRAM,
                state: "not attached",
            }),
        }
    }

    /// Whether the program is attached.
    pub fn is_attached(&self) -> bool {
        self.link.is_some()
    }

    /// Write-opens refused so far, summed over CPUs.
    pub fn denied_writes(&self) -> Result<u64> {
        let per_cpu = self.stats.get(&0, 0).map_err(|source| Error::Map {
            op: "read",
            map: STATS_MAP,
            source,
        })?;
        Ok(per_cpu.iter().map(|s| s.denied).sum())
    }
}
