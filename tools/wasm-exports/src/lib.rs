//! Keeps only the named exports of a WebAssembly module, copying every other section byte for byte.
//!
//! Envoy calls a proxy-wasm callback only when the module exports it, but the Rust SDK exports every callback it
//! knows, so a filter that ignores body chunks is still entered for each of them. Dropping an export removes only
//! the name: no function, type or index changes, so the module stays valid whatever else it holds. Only the
//! section framing and the export section are parsed; validating the rest is the loader's job.

use std::fmt;

/// The module header: `\0asm` and version 1, little-endian.
const MAGIC: &[u8; 4] = b"\0asm";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8;
const EXPORT_SECTION: u8 = 7;

/// A module with fewer exports, and the names it no longer exports (in module order).
#[derive(Debug, PartialEq, Eq)]
pub struct Trimmed {
    pub module: Vec<u8>,
    pub dropped: Vec<String>,
}

/// Why a module could not be read or trimmed. Offsets count bytes from the start of the module.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    NotWasm,
    UnsupportedVersion(u32),
    Truncated {
        what: &'static str,
        offset: usize,
    },
    BadInteger {
        what: &'static str,
        offset: usize,
    },
    SectionOverrun {
        id: u8,
        offset: usize,
        size: u32,
    },
    ExportSectionLength {
        declared_end: usize,
        entries_end: usize,
    },
    SecondExportSection {
        offset: usize,
    },
    NameNotUtf8 {
        offset: usize,
    },
    /// Names to keep that the module does not export: the list and the module disagree.
    Missing(Vec<String>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotWasm => write!(f, "not a WebAssembly module: it does not start with \\0asm"),
            Error::UnsupportedVersion(version) => {
                write!(f, "WebAssembly binary version {version} is not supported (only {VERSION})")
            }
            Error::Truncated { what, offset } => write!(f, "the module ends inside the {what} at byte {offset}"),
            Error::BadInteger { what, offset } => {
                write!(f, "the {what} at byte {offset} is not an unsigned 32-bit LEB128 integer")
            }
            Error::SectionOverrun { id, offset, size } => {
                write!(f, "section {id} at byte {offset} declares {size} bytes, more than the module has left")
            }
            Error::ExportSectionLength { declared_end, entries_end } => write!(
                f,
                "the export section declares that it ends at byte {declared_end}, but its entries end at byte \
                 {entries_end}"
            ),
            Error::SecondExportSection { offset } => write!(f, "a second export section at byte {offset}"),
            Error::NameNotUtf8 { offset } => write!(f, "the export name at byte {offset} is not UTF-8"),
            Error::Missing(names) => {
                write!(f, "the module does not export {}, which the list of exports to keep names", names.join(", "))
            }
        }
    }
}

impl std::error::Error for Error {}

/// The module with only the exports named in `keep`; every name in `keep` must be exported.
pub fn keep_exports(module: &[u8], keep: &[&str]) -> Result<Trimmed, Error> {
    let sections = sections(module)?;
    let mut out = Vec::with_capacity(module.len());
    out.extend_from_slice(&module[..HEADER_LEN]);
    let mut dropped = Vec::new();
    let mut found = vec![false; keep.len()];
    let mut export_section_seen = false;
    for section in sections {
        let section = section?;
        if section.id != EXPORT_SECTION {
            out.extend_from_slice(section.whole);
            continue;
        }
        if export_section_seen {
            return Err(Error::SecondExportSection { offset: section.offset });
        }
        export_section_seen = true;
        let mut kept = Vec::new();
        let mut kept_count: u32 = 0;
        for export in exports(&section)? {
            let export = export?;
            match keep.iter().position(|name| *name == export.name) {
                Some(index) => {
                    found[index] = true;
                    kept.extend_from_slice(export.whole);
                    kept_count += 1;
                }
                None => dropped.push(export.name.to_owned()),
            }
        }
        let mut body = Vec::with_capacity(kept.len() + 5);
        write_u32(&mut body, kept_count);
        body.extend_from_slice(&kept);
        out.push(EXPORT_SECTION);
        // Never longer than the section it came from, whose size was a u32.
        write_u32(&mut out, u32::try_from(body.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(&body);
    }
    let missing: Vec<String> =
        keep.iter().zip(&found).filter(|(_, found)| !**found).map(|(name, _)| (*name).to_owned()).collect();
    if !missing.is_empty() {
        return Err(Error::Missing(missing));
    }
    Ok(Trimmed { module: out, dropped })
}

/// The names a module exports, in module order.
pub fn export_names(module: &[u8]) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for section in sections(module)? {
        let section = section?;
        if section.id == EXPORT_SECTION {
            for export in exports(&section)? {
                names.push(export?.name.to_owned());
            }
        }
    }
    Ok(names)
}

/// The names in a list of exports: one a line; `#` starts a comment; blank lines are ignored.
pub fn parse_list(text: &str) -> Vec<&str> {
    text.lines().map(|line| line.split('#').next().unwrap_or_default().trim()).filter(|name| !name.is_empty()).collect()
}

struct Section<'a> {
    id: u8,
    /// Where the section (its id byte) starts.
    offset: usize,
    /// Id, size and body, as found.
    whole: &'a [u8],
    body: Reader<'a>,
}

struct Export<'a> {
    name: &'a str,
    /// Name, kind and index, as found.
    whole: &'a [u8],
}

/// The module's sections after checking its header.
fn sections(module: &[u8]) -> Result<impl Iterator<Item = Result<Section<'_>, Error>>, Error> {
    let mut reader = Reader { bytes: module, pos: 0 };
    if reader.take(MAGIC.len(), "header").ok() != Some(MAGIC.as_slice()) {
        return Err(Error::NotWasm);
    }
    let version = reader.take(4, "version")?;
    let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed || reader.at_end() {
            return None;
        }
        let section = reader.section();
        failed = section.is_err();
        Some(section)
    }))
}

/// The entries of an export section, after its count; the last item is an error if the entries do not fill it.
fn exports<'a>(section: &Section<'a>) -> Result<impl Iterator<Item = Result<Export<'a>, Error>>, Error> {
    let mut reader = Reader { bytes: section.body.bytes, pos: section.body.pos };
    let mut count = reader.u32("export count")?;
    let mut failed = false;
    Ok(std::iter::from_fn(move || {
        if failed {
            return None;
        }
        if count == 0 {
            failed = true;
            return (!reader.at_end()).then_some(Err(Error::ExportSectionLength {
                declared_end: reader.bytes.len(),
                entries_end: reader.pos,
            }));
        }
        count -= 1;
        let export = reader.export();
        failed = export.is_err();
        Some(export)
    }))
}

/// A cursor over the module; `bytes` ends where the enclosing section ends, positions count from the module start.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(len).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(Error::Truncated { what, offset: self.pos })?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }

    /// An unsigned LEB128 `u32`: at most five bytes, the last holding at most four bits (padding is allowed).
    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        let offset = self.pos;
        let mut value: u32 = 0;
        for shift in [0, 7, 14, 21, 28] {
            let byte = self.byte(what)?;
            if shift == 28 && byte > 0x0f {
                return Err(Error::BadInteger { what, offset });
            }
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Error::BadInteger { what, offset })
    }

    fn section(&mut self) -> Result<Section<'a>, Error> {
        let offset = self.pos;
        let id = self.byte("section id")?;
        let size = self.u32("section size")?;
        let body_start = self.pos;
        self.take(size as usize, "section").map_err(|_| Error::SectionOverrun { id, offset, size })?;
        Ok(Section {
            id,
            offset,
            whole: &self.bytes[offset..self.pos],
            body: Reader { bytes: &self.bytes[..self.pos], pos: body_start },
        })
    }

    fn export(&mut self) -> Result<Export<'a>, Error> {
        let start = self.pos;
        let len = self.u32("export name length")?;
        let name_offset = self.pos;
        let name = self.take(len as usize, "export name")?;
        let name = std::str::from_utf8(name).map_err(|_| Error::NameNotUtf8 { offset: name_offset })?;
        self.byte("export kind")?;
        self.u32("export index")?;
        Ok(Export { name, whole: &self.bytes[start..self.pos] })
    }
}

fn write_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests;
