//! `berth crdgen`: prints the CustomResourceDefinition of Berth's own kinds, generated from their Rust types.

use crate::objects::port_allocation;

pub fn crdgen() {
    print!("{}", port_allocation::crd_yaml());
}
