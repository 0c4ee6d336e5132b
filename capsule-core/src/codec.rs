//! Bounds-checked little-endian binary encoding shared by manifests and registry records.
//!
//! Decoding never panics: every read checks the remaining length and reports what was
//! being read when the input ends early or holds an impossible value.

/// Appends fixed-width little-endian integers and length-prefixed byte strings.
#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }
    /// An encoder whose buffer holds `n` bytes before it grows.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }
    /// Appends to `buf` (get it back with [`Encoder::into_inner`]).
    pub fn from_vec(buf: Vec<u8>) -> Self {
        Self { buf }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A byte string prefixed with its length as u32.
    pub fn bytes(&mut self, v: &[u8]) {
        // Lengths above u32::MAX cannot occur for paths, names or xattr names.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.buf.extend_from_slice(v);
    }
    /// Overwrites bytes written earlier (a length or digest known only at the end).
    pub fn patch(&mut self, at: usize, v: &[u8]) {
        self.buf[at..at + v.len()].copy_from_slice(v);
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }
    pub fn clear(&mut self) {
        self.buf.clear();
    }
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads what [`Encoder`] wrote; errors name the field that could not be read.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// The bytes read since position `start` (an earlier [`Decoder::position`]).
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }
    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.remaining() < n {
            return Err(format!(
                "truncated at byte {} while reading {what} ({n} bytes needed, {} left)",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(a))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(a))
    }
    pub fn array32(&mut self, what: &str) -> Result<[u8; 32], String> {
        let mut a = [0u8; 32];
        a.copy_from_slice(self.take(32, what)?);
        Ok(a)
    }
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub fn finish(&self, what: &str) -> Result<(), String> {
        if self.remaining() != 0 {
            return Err(format!(
                "{} unexpected trailing bytes after {what}",
                self.remaining()
            ));
        }
        Ok(())
    }
}

/// Appends BLAKE3 of everything written so far: the trailer [`checked_body`] verifies.
pub fn seal_with_checksum(mut e: Encoder) -> Vec<u8> {
    let check = blake3::hash(e.as_slice());
    e.raw(check.as_bytes());
    e.into_inner()
}

/// Opens a file written as magic, version, body, BLAKE3 trailer: checks the trailer, the
/// 16-byte magic and the version, and returns a decoder positioned after them. `what` names
/// the kind of file in the errors ("manifest", "seal record").
pub fn checked_body<'a>(
    bytes: &'a [u8],
    magic: &[u8; 16],
    version: u32,
    what: &str,
) -> Result<Decoder<'a>, String> {
    checked_body_of(bytes, magic, version..=version, what).map(|(d, _)| d)
}

/// [`checked_body`] for a format that reads several versions: the decoder and the version.
pub fn checked_body_of<'a>(
    bytes: &'a [u8],
    magic: &[u8; 16],
    versions: std::ops::RangeInclusive<u32>,
    what: &str,
) -> Result<(Decoder<'a>, u32), String> {
    if bytes.len() < 32 {
        return Err(format!("{what} too short"));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != trailer {
        return Err(format!(
            "checksum mismatch: the {what} was altered or damaged"
        ));
    }
    let mut d = Decoder::new(body);
    if d.take(16, "magic")? != magic {
        return Err(format!("not a capsule {what} (bad magic)"));
    }
    let v = d.u32("version")?;
    if !versions.contains(&v) {
        let reads = if versions.start() == versions.end() {
            versions.start().to_string()
        } else {
            format!("{} to {}", versions.start(), versions.end())
        };
        return Err(format!(
            "{what} format version {v} is not supported (this sealtool reads {reads})"
        ));
    }
    Ok((d, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut e = Encoder::new();
        e.u8(7);
        e.u32(0xdead_beef);
        e.u64(u64::MAX - 1);
        e.bytes(b"na\xffme");
        let buf = e.into_inner();
        let mut d = Decoder::new(&buf);
        assert_eq!(d.u8("a").unwrap(), 7);
        assert_eq!(d.u32("b").unwrap(), 0xdead_beef);
        assert_eq!(d.u64("c").unwrap(), u64::MAX - 1);
        assert_eq!(d.bytes("d").unwrap(), b"na\xffme");
        d.finish("record").unwrap();
        for cut in 0..buf.len() {
            let mut d = Decoder::new(&buf[..cut]);
            let r = (|| -> Result<(), String> {
                d.u8("a")?;
                d.u32("b")?;
                d.u64("c")?;
                d.bytes("d")?;
                Ok(())
            })();
            assert!(r.is_err(), "cut at {cut} must fail");
        }
    }
}
