//! Generic loading steps every fsguard program goes through, with aya 0.13:
//! parse an embedded object against the kernel's BTF (`EbpfLoader::btf(..).load(..)`, which
//! also applies CO-RE relocations and creates the maps), load an `lsm/...` program for its hook
//! (`Lsm::load(hook, &btf)`), attach it and own the link (`Lsm::attach` + `Lsm::take_link`;
//! dropping the link detaches), and take typed map handles out of the object.

use aya::maps::{Map, MapError};
use aya::programs::lsm::LsmLink;
use aya::programs::Lsm;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::{Error, Result};

/// Reads the running kernel's BTF (`/sys/kernel/btf/vmlinux`), needed to relocate the objects
/// and to find the BTF id of each LSM hook (`bpf_lsm_<hook>`).
pub fn kernel_btf() -> Result<Btf> {
    Btf::from_sys_fs().map_err(|source| Error::KernelBtf { source })
}

/// One BPF object loaded by aya, with its name for error messages.
#[derive(Debug)]
pub(crate) struct LsmObject {
    name: &'static str,
    ebpf: Ebpf,
}

impl LsmObject {
    /// Parses `bytes`, relocates it against `btf` and creates its maps in the kernel.
    /// Programs are not loaded yet.
    pub(crate) fn load(name: &'static str, bytes: &[u8], btf: &Btf) -> Result<Self> {
        let ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .load(bytes)
            .map_err(|source| Error::LoadObject {
                object: name,
                source,
            })?;
        Ok(Self { name, ebpf })
    }

    fn lsm_mut(&mut self, program: &'static str) -> Result<&mut Lsm> {
        let object = self.name;
        self.ebpf
            .program_mut(program)
            .ok_or(Error::MissingProgram { object, program })?
            .try_into()
            .map_err(|source| Error::NotLsm {
                object,
                program,
                source,
            })
    }

    /// Loads (verifies) the LSM program `program` for `hook` (e.g. `"file_open"`).
    pub(crate) fn load_lsm(
        &mut self,
        program: &'static str,
        hook: &'static str,
        btf: &Btf,
    ) -> Result<()> {
        self.lsm_mut(program)?
            .load(hook, btf)
            .map_err(|source| Error::LoadProgram {
                program,
                hook,
                cause: source,
            })
    }

    /// Attaches a loaded LSM program; the program stays attached until the returned link is
    /// dropped (or the process exits).
    pub(crate) fn attach_lsm(
        &mut self,
        program: &'static str,
        hook: &'static str,
    ) -> Result<LsmLink> {
        let attach_err = |source| Error::Attach {
            program,
            hook,
            source,
        };
        let lsm = self.lsm_mut(program)?;
        let id = lsm.attach().map_err(attach_err)?;
        lsm.take_link(id).map_err(attach_err)
    }

    /// Takes map `map` out of the object as a typed handle (e.g. `HashMap<MapData, K, V>`);
    /// fails if its type or key/value sizes do not match.
    pub(crate) fn take_map<M>(&mut self, map: &'static str) -> Result<M>
    where
        M: TryFrom<Map, Error = MapError>,
    {
        let object = self.name;
        let raw = self
            .ebpf
            .take_map(map)
            .ok_or(Error::MissingMap { object, map })?;
        M::try_from(raw).map_err(|source| Error::MapType {
            object,
            map,
            source,
        })
    }
}
