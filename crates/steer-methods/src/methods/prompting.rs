//! Prompting baseline: few-shot demonstrations of the behaviour in the prompt.
//!
//! The baseline steering comparisons most often omit and the one that often
//! wins (Brown et al. 2020, "Language Models are Few-Shot Learners",
//! arXiv:2005.14165, for few-shot prompting; Tan et al. 2024,
//! arXiv:2407.12404, and Wu et al. 2025, "AxBench", arXiv:2501.17148, for
//! prompting as the baseline steering has to beat). `shots` training pairs,
//! chosen with the seed, become two prefixes: every demonstration answered
//! with the behaviour-matching completion (used for positive multipliers) or
//! with the non-matching one (negative multipliers). Each demonstration is
//! `prompt ++ completion ++ separator`. The model's weights and activations
//! are not touched, and the layer is only recorded.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use steer_model::{Llama, Positions};

use crate::steering::{Steering, SteeringKind};
use crate::{FitConfig, HyperParam, MethodError, MethodInfo, Result, SteeringMethod, TrainingSet};

/// Few-shot demonstrations in front of the prompt.
pub struct Prompting;

static PARAMS: [HyperParam; 1] = [HyperParam {
    name: "shots",
    default: 4.0,
    doc: "number of demonstrations put in front of the prompt",
}];

impl SteeringMethod for Prompting {
    fn info(&self) -> MethodInfo {
        MethodInfo {
            name: "prompting",
            paper: "few-shot prompting baseline: Brown et al. 2020, Language Models are Few-Shot Learners, arXiv:2005.14165",
            summary: "demonstrations answered with (or against) the behaviour, put in front of the prompt",
            hyperparameters: &PARAMS,
            multipliers: &[-1.0, 0.0, 1.0],
        }
    }

    /// The steering is a prompt prefix, at no layer.
    fn per_layer(&self) -> bool {
        false
    }

    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering> {
        let info = self.info();
        config.check_params(&info)?;
        config.check_layer(model)?;
        data.check(info.name)?;
        let shots = config.param(&info, "shots")?;
        if shots < 1.0 || shots.fract() != 0.0 || shots as usize > data.pairs.len() {
            return Err(MethodError::BadInput(format!(
                "prompting: shots = {shots} needs a whole number from 1 to the {} training pairs",
                data.pairs.len()
            )));
        }
        let mut order: Vec<usize> = (0..data.pairs.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(config.seed));
        let (mut positive, mut negative) = (Vec::new(), Vec::new());
        for &i in &order[..shots as usize] {
            let pair = &data.pairs[i];
            positive.extend(pair.positive_sequence());
            positive.extend(&data.separator);
            negative.extend(pair.negative_sequence());
            negative.extend(&data.separator);
        }
        let context = model.config().max_position_embeddings;
        if positive.len().max(negative.len()) >= context {
            return Err(MethodError::BadInput(format!(
                "prompting: {shots} demonstrations take {} tokens, more than the model's context of {context}",
                positive.len().max(negative.len())
            )));
        }
        Steering::fitted(
            &info,
            config,
            data.pairs.len(),
            SteeringKind::Prompt { positive, negative },
            Positions::All,
        )
    }
}
