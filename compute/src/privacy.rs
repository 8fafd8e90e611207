//! Differential privacy of federated training (decision 0045): each site clips its round's update and adds Gaussian
//! noise before anything leaves, and the privacy spent is accounted in zero-concentrated DP (zCDP).
//!
//! A site's update in a round is the change `Δ = w_local − w_round` of the model it trained. Clipped to L2 norm `C`,
//! any change of the site's rows (one record, or all of them) moves it by at most `2C`; Gaussian noise of standard
//! deviation `σ = z·C` per coordinate then makes the round `ρ = (2C)² / (2σ²) = 2 / z²` zCDP for the site's rows.
//! zCDP adds up over rounds and jobs, and `ρ`-zCDP implies `(ε, δ)`-DP with `ε = ρ + 2·√(ρ·ln(1/δ))`.
//! Whatever happens to the released update afterwards (averaging, secure aggregation's masks) costs nothing more.

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// What a job asks of each site: the clipping norm, the noise multiplier and the training rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Privacy {
    /// `C`: the largest L2 norm of a site's update in one round.
    pub clip: f64,
    /// `z`: the noise's standard deviation in units of `C`.
    pub noise_multiplier: f64,
    /// The training rounds the job takes at most (its privacy cost is counted for all of them at admission).
    pub rounds: u32,
}

impl Privacy {
    /// Refuses a clip or noise multiplier that is not a positive, finite number, or rounds outside 1 to 99, naming
    /// the member.
    pub fn check(&self) -> Result<(), String> {
        for (name, value) in [("clip", self.clip), ("noiseMultiplier", self.noise_multiplier)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("differentialPrivacy.{name}: a positive number, not {value}"));
            }
        }
        if !(1..=99).contains(&self.rounds) {
            return Err(format!("differentialPrivacy.rounds: 1 to 99, not {}", self.rounds));
        }
        Ok(())
    }

    /// The zCDP `ρ` one round spends.
    pub fn rho_per_round(&self) -> f64 {
        2.0 / (self.noise_multiplier * self.noise_multiplier)
    }

    /// The zCDP `ρ` the whole job spends at a site.
    pub fn rho(&self) -> f64 {
        f64::from(self.rounds) * self.rho_per_round()
    }

    /// `update` clipped to norm `C`, with Gaussian noise of deviation `z·C` from `seed` added to each coordinate. The
    /// seed must be fresh and secret (not the job's): whoever knows it can take the noise away.
    pub fn privatise(&self, update: &[f64], seed: [u8; 32]) -> Vec<f64> {
        let norm = update.iter().map(|v| v * v).sum::<f64>().sqrt();
        let factor = if norm > self.clip { self.clip / norm } else { 1.0 };
        let noise = Normal::new(0.0, self.noise_multiplier * self.clip).expect("a positive, finite deviation");
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
        update.iter().map(|v| v * factor + noise.sample(&mut rng)).collect()
    }
}

/// The `δ` at which Hanse states a budget's `ε` (`hanse:privacyEpsilon`): fixed, so that a consumer cannot buy a
/// smaller `ε` with a larger `δ`.
pub const DELTA: f64 = 1e-6;

/// The `ε` of `(ε, δ)`-DP that `ρ`-zCDP implies (0 for `ρ` = 0).
pub fn epsilon(rho: f64, delta: f64) -> f64 {
    match rho > 0.0 {
        true => rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt(),
        false => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_clipped_to_its_norm_and_noised_with_the_asked_deviation() {
        let privacy = Privacy { clip: 1.0, noise_multiplier: 2.0, rounds: 1 };
        // Without noise worth speaking of, a long update comes back with norm C, a short one as it was.
        let quiet = Privacy { clip: 1.0, noise_multiplier: 1e-12, rounds: 1 };
        let clipped = quiet.privatise(&[3.0, 4.0], [1; 32]);
        assert!((clipped[0] - 0.6).abs() < 1e-9 && (clipped[1] - 0.8).abs() < 1e-9, "{clipped:?}");
        assert!((quiet.privatise(&[0.3, 0.4], [1; 32])[1] - 0.4).abs() < 1e-9);
        // The noise has deviation z·C: over many coordinates the sample deviation is near 2.
        let noised = privacy.privatise(&vec![0.0; 20_000], [2; 32]);
        let sd = (noised.iter().map(|v| v * v).sum::<f64>() / noised.len() as f64).sqrt();
        assert!((sd - 2.0).abs() < 0.05, "{sd}");
        // Another seed, other noise.
        assert_ne!(privacy.privatise(&[0.0], [3; 32]), privacy.privatise(&[0.0], [4; 32]));
    }

    #[test]
    fn rounds_add_up_in_zcdp_and_convert_to_epsilon() {
        let privacy = Privacy { clip: 0.5, noise_multiplier: 10.0, rounds: 10 };
        assert!((privacy.rho_per_round() - 0.02).abs() < 1e-15);
        // 10 rounds: ρ = 0.2; ε at δ = 1e-6 is 0.2 + 2·√(0.2·ln 1e6) ≈ 3.525.
        let eps = epsilon(privacy.rho(), 1e-6);
        assert!((eps - 3.5247).abs() < 1e-3, "{eps}");
        assert_eq!(epsilon(0.0, 1e-6), 0.0);
        assert!(Privacy { clip: 0.0, noise_multiplier: 1.0, rounds: 1 }.check().is_err());
        assert!(Privacy { clip: 1.0, noise_multiplier: f64::NAN, rounds: 1 }.check().is_err());
        assert!(Privacy { clip: 1.0, noise_multiplier: 1.0, rounds: 100 }.check().unwrap_err().contains("rounds"));
    }
}
