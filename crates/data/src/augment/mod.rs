//! Changing texts on purpose: seeded perturbations for robustness checks ([`perturb`]) and the
//! bundled synonym list they share with augmentation ([`synonyms`]).

pub mod perturb;
pub mod synonyms;
