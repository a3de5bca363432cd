//! Looking methods up. The list itself is in `methods/mod.rs`: adding a method
//! is one file in `methods/` and one line there.

use crate::SteeringMethod;

/// Every registered method, in display order.
pub fn registry() -> Vec<Box<dyn SteeringMethod>> {
    crate::methods::all()
}

/// The method registered as `name`.
pub fn find(name: &str) -> Option<Box<dyn SteeringMethod>> {
    registry().into_iter().find(|m| m.info().name == name)
}
