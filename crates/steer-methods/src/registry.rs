//! The one list of methods. Adding a method is one file in `methods/` and one line here.

use crate::SteeringMethod;
use crate::direction::Directional;
use crate::methods::{actadd::ActAdd, caa::Caa, pca::PcaDifferences, probe::Probe, random::RandomDirection};

/// Every registered method, in display order.
pub fn registry() -> Vec<Box<dyn SteeringMethod>> {
    vec![
        Box::new(Directional(Caa)),
        Box::new(Directional(ActAdd)),
        Box::new(Directional(PcaDifferences)),
        Box::new(Directional(Probe)),
        Box::new(Directional(RandomDirection)),
    ]
}

/// The method registered as `name`.
pub fn find(name: &str) -> Option<Box<dyn SteeringMethod>> {
    registry().into_iter().find(|m| m.info().name == name)
}
