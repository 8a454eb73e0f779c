//! Sources of objects. Each one delivers complete snapshots of what it holds, for [`crate::index::Index::reset`].

pub mod dir;

use std::path::PathBuf;

use crate::Diagnostic;
use crate::objects::Object;

/// Everything a source holds at one moment, in the order it read it, and what it could not read.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<(Object, Option<PathBuf>)>,
    pub diagnostics: Vec<Diagnostic>,
}
