//! Reading and resolving the task: the command line, the descriptor's bytes,
//! the v1 descriptor (raw types and validation) and the resolved settings
//! every later layer reads.

pub mod cli;
pub mod descriptor;
pub mod input;
pub mod load;
pub mod settings;
