//! Secure aggregation's arithmetic (decision 0044): what a site adds to its update so that the orchestrator learns
//! only the sum over sites.
//!
//! A site's update (a vector of numbers) is encoded in fixed point as integers modulo 2¹²⁸. To it the site adds
//! - one **pairwise mask** per other site, from a seed the two share: added by the site whose public key sorts first,
//!   subtracted by the other, so that the pairwise masks cancel exactly in the sum over the sites;
//! - its **own mask**, from a seed only it knows, which it reveals only once it was told that every site of its round
//!   answered; no site reveals its own mask for two sets of sites of one round.
//!
//! Integer arithmetic modulo 2¹²⁸ makes the cancelling exact: the unmasked sum differs from the plain sum only by the
//! fixed-point rounding of each value (below 2⁻⁴¹). The masks come from ChaCha20 keyed with the seeds.

use rand::{RngCore, SeedableRng};
use serde_json::Value as Json;

use crate::analysis::JobError;

/// Fractional bits of the fixed-point encoding: values are kept to 2⁻⁴⁰ (about 9·10⁻¹³).
pub const FRACTION_BITS: u32 = 40;
/// The largest magnitude a value may have; sums of this many sites stay far from the modulus.
pub const LARGEST: f64 = (1u128 << 80) as f64;

/// A masked (or unmasked) vector: integers modulo 2¹²⁸.
pub type Encoded = Vec<u128>;

/// The fixed-point encoding of `values`; a value that is not finite or too large for it is refused by position.
pub fn encode(values: &[f64]) -> Result<Encoded, JobError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v.is_finite() && v.abs() < LARGEST {
            true => Ok((v * (1u64 << FRACTION_BITS) as f64).round() as i128 as u128),
            false => Err(JobError::Invalid(format!("value {i} ({v}) cannot be aggregated securely"))),
        })
        .collect()
}

/// The numbers an encoded (unmasked) vector stands for.
pub fn decode(values: &[u128]) -> Vec<f64> {
    values.iter().map(|v| *v as i128 as f64 / (1u64 << FRACTION_BITS) as f64).collect()
}

/// The mask stream of `seed`, `len` values long.
pub fn mask(seed: &[u8; 32], len: usize) -> Encoded {
    let mut stream = rand_chacha::ChaCha20Rng::from_seed(*seed);
    (0..len).map(|_| (u128::from(stream.next_u64()) << 64) | u128::from(stream.next_u64())).collect()
}

/// A site's masks for one round: `(seed, add)` per other site (`add`: this site's key sorts first) and its own.
#[derive(Debug, Clone)]
pub struct Masks {
    pub pairs: Vec<([u8; 32], bool)>,
    pub own: [u8; 32],
}

/// `values` with every mask of `masks` applied.
pub fn masked(values: &[u128], masks: &Masks) -> Encoded {
    let mut out = values.to_vec();
    add(&mut out, &mask(&masks.own, values.len()));
    for (seed, plus) in &masks.pairs {
        let stream = mask(seed, values.len());
        match plus {
            true => add(&mut out, &stream),
            false => subtract(&mut out, &stream),
        }
    }
    out
}

/// `sum += values`, modulo 2¹²⁸.
pub fn add(sum: &mut [u128], values: &[u128]) {
    sum.iter_mut().zip(values).for_each(|(s, v)| *s = s.wrapping_add(*v));
}

/// `sum -= values`, modulo 2¹²⁸.
pub fn subtract(sum: &mut [u128], values: &[u128]) {
    sum.iter_mut().zip(values).for_each(|(s, v)| *s = s.wrapping_sub(*v));
}

/// An encoded vector as JSON: decimal strings (JSON numbers cannot hold 128 bits).
pub fn to_json(values: &[u128]) -> Json {
    Json::Array(values.iter().map(|v| Json::String(v.to_string())).collect())
}

/// An encoded vector from JSON; `None` unless it is a list of `len` decimal strings.
pub fn from_json(value: &Json, len: usize) -> Option<Encoded> {
    let items = value.as_array().filter(|items| items.len() == len)?;
    items.iter().map(|item| item.as_str()?.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(byte: u8) -> [u8; 32] {
        [byte; 32]
    }

    #[test]
    fn masked_updates_sum_to_the_plain_sum_once_the_own_masks_are_taken_away() {
        let updates = [vec![3000.0, -1.25, 0.5e6], vec![2500.0, 7.75, -3.0], vec![4000.0, 1e-9, 12.0]];
        // Sites 0, 1, 2 in key order; pair seeds s01, s02, s12.
        let (s01, s02, s12) = (seed(1), seed(2), seed(3));
        let sites = [
            Masks { pairs: vec![(s01, true), (s02, true)], own: seed(10) },
            Masks { pairs: vec![(s01, false), (s12, true)], own: seed(11) },
            Masks { pairs: vec![(s02, false), (s12, false)], own: seed(12) },
        ];
        let received: Vec<Encoded> = updates.iter().zip(&sites).map(|(u, m)| masked(&encode(u).unwrap(), m)).collect();
        // What the orchestrator receives of a site tells nothing of the site's update.
        for (update, seen) in updates.iter().zip(&received) {
            assert!(decode(seen).iter().zip(update).all(|(s, u)| (s - u).abs() > 1.0), "{seen:?}");
        }
        let mut sum = vec![0u128; 3];
        received.iter().for_each(|r| add(&mut sum, r));
        // Without the own masks the sum is still masked.
        let plain: Vec<f64> = (0..3).map(|k| updates.iter().map(|u| u[k]).sum()).collect();
        assert!(decode(&sum).iter().zip(&plain).all(|(s, p)| (s - p).abs() > 1.0));
        sites.iter().for_each(|m| subtract(&mut sum, &mask(&m.own, 3)));
        for (got, want) in decode(&sum).iter().zip(&plain) {
            assert!((got - want).abs() < 1e-11, "{got} vs {want}");
        }
        assert_eq!(from_json(&to_json(&sum), 3), Some(sum.clone()));
        assert_eq!(from_json(&to_json(&sum), 2), None);
    }

    #[test]
    fn values_the_encoding_cannot_hold_are_refused_by_position() {
        assert!(encode(&[1.0, f64::NAN]).unwrap_err().to_string().starts_with("value 1"));
        assert!(encode(&[LARGEST]).is_err());
        assert_eq!(decode(&encode(&[-2.5, 0.0, 1e20]).unwrap()), vec![-2.5, 0.0, 1e20]);
    }
}
