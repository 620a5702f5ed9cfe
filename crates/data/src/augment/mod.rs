//! Changing texts on purpose: seeded perturbations for robustness checks ([`perturb`]), EDA
//! augmentation ([`eda`]), and the bundled synonym list both use ([`synonyms`]).

pub mod eda;
pub mod perturb;
pub mod synonyms;
