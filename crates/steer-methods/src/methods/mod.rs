//! One file per method, and the registry: the list below is the only place a
//! method is registered. Each line names the method's file (module) and the
//! value that implements [`SteeringMethod`](crate::SteeringMethod), built with
//! the names that file exports.

use crate::direction::Directional;

macro_rules! registry {
    ($($module:ident => $method:expr),* $(,)?) => {
        $(pub mod $module;)*

        /// Every registered method, in display order.
        pub fn all() -> Vec<Box<dyn crate::SteeringMethod>> {
            vec![$(Box::new({
                #[allow(unused_imports)]
                use $module::*;
                $method
            })),*]
        }
    };
}

registry! {
    caa => Directional(Caa),
    icv => Icv,
    fv => FunctionVector,
    actadd => Directional(ActAdd),
    pca => Directional(PcaDifferences),
    probe => Directional(Probe),
    mimic => Mimic,
    leace => Leace,
    prompting => Prompting,
    random => Directional(RandomDirection),
}
