//! The compiled BPF objects, embedded in the binary.
//!
//! `build.rs` compiles every `bpf/NAME.bpf.c` and generates one `pub static NAME: &[u8]`
//! (upper-cased stem) plus [`ALL`]; the bytes are 32-byte aligned (`include_bytes_aligned!`)
//! so aya can parse the ELF in place.

include!(concat!(env!("OUT_DIR"), "/objects.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_object_is_a_bpf_elf_with_btf() {
        assert_eq!(&SMOKE[..4], b"\x7fELF");
        // e_machine (offset 18, little-endian) is EM_BPF = 247.
        assert_eq!(u16::from_le_bytes([SMOKE[18], SMOKE[19]]), 247);
        let has = |needle: &[u8]| SMOKE.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(b".BTF.ext"),
            "object lost its BTF.ext (built without -g?)"
        );
        assert!(has(b"lsm/file_open"));
        assert!(has(b"smoke_file_open"));
        assert!(ALL.iter().any(|(name, _)| *name == "smoke"));
    }
}
