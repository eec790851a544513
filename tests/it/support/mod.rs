//! What the test modules share. In-memory tests use [`harness`] (the handler over
//! [`fakes`]); end-to-end tests use [`world`] (the real binary under [`runtime_api`] or
//! [`cargo_lambda`], against [`moto`] and the Image Builder emulator, as [`process`]es).
//! Both take their events from [`fixtures`] and their names from [`constants`].

pub mod cargo_lambda;
pub mod cli;
pub mod constants;
pub mod fakes;
pub mod fixtures;
pub mod harness;
pub mod moto;
pub mod process;
pub mod runtime_api;
pub mod world;
