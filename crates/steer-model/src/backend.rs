//! Run-time choice of the burn backend.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{ModelError, Result};

/// The compute backends steerbench can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn-flex, the CPU backend (the default).
    Cpu,
    /// burn-wgpu: Vulkan, Metal or DX12 through wgpu.
    #[cfg(feature = "wgpu")]
    Wgpu,
    /// burn-ndarray, deprecated by burn; kept to compare against burn-flex.
    #[cfg(feature = "ndarray")]
    Ndarray,
}

impl Backend {
    /// Every backend compiled into this build.
    pub fn available() -> Vec<Backend> {
        vec![
            Backend::Cpu,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu,
            #[cfg(feature = "ndarray")]
            Backend::Ndarray,
        ]
    }

    /// The burn device, checked to be usable: a missing GPU is an error, not a panic.
    pub fn device(self) -> Result<Device> {
        let device = match self {
            Backend::Cpu => Device::flex(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "ndarray")]
            Backend::Ndarray => Device::ndarray(),
        };
        // A GPU runtime panics when it finds no adapter; turn that into an error.
        let probe = device.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(move || {
            let t: Tensor<1> = Tensor::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &probe);
            t.sum().into_data().try_to_vec::<f32>().ok()
        });
        std::panic::set_hook(previous);
        match outcome {
            Ok(Some(v)) if v == [3.0] => Ok(device),
            Ok(_) => Err(ModelError::Backend(format!(
                "the {self} backend returned a wrong result on a probe"
            ))),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown failure");
                let first = msg.lines().next().unwrap_or(msg);
                Err(ModelError::Backend(format!(
                    "the {self} backend is not usable here: {first}"
                )))
            }
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => "wgpu",
            #[cfg(feature = "ndarray")]
            Backend::Ndarray => "ndarray",
        })
    }
}

impl FromStr for Backend {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        Backend::available()
            .into_iter()
            .find(|b| b.to_string() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Backend::available().iter().map(|b| b.to_string()).collect();
                ModelError::bad_request(format!("unknown backend '{s}' (this build has: {})", names.join(", ")))
            })
    }
}
