//! The Dataspace Protocol's wire, below the services that speak it: the client for peers ([`client`]), the DSP
//! error messages ([`error`]) and the catalogue request ([`catalog`]). The public router serves
//! it; the services send it.

pub mod catalog;
pub mod client;
pub mod error;
