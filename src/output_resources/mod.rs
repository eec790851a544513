//! Output resources: what DeleteImage leaves behind — the image's AMIs, their EBS snapshots
//! and its ECR container images — and the rules for deleting them first.
//!
//! DeleteImage removes only the Image Builder resource. With `DELETE_OUTPUT_RESOURCES` set,
//! the image is read (GetImage → `outputResources`), a [`plan::Plan`] is built, run through
//! the EC2 / ECR ports ([`run::clean`]) and DeleteImage is called **last**, only when
//! [`entry::Verdict::Proceed`] says every piece is gone — so a retry can still find the
//! pieces through GetImage. Everything here is pure or talks only through the ports.

pub mod digest;
pub mod entry;
pub mod guard;
pub mod mode;
pub mod plan;
pub mod run;
pub mod uri;
