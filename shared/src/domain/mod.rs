//! Value objects and the `Connection` record, one file a type. Values are parsed at
//! the edge (see `input`), so everything past it holds only valid ones.

mod account;
mod connection;
mod connection_id;
mod connection_name;
mod last_used;
mod owner;
mod server_url;
mod status;
mod verification;

pub use account::Account;
pub use connection::{Connection, NewConnection, now};
pub use connection_id::ConnectionId;
pub use connection_name::{ConnectionName, NAME_MAX_CHARS, fold_name};
pub use last_used::LastUsed;
pub use owner::{OWNER_MAX_BYTES, Owner};
pub use server_url::{DEFAULT_CLOUD_URL, Flavor, ServerUrl};
pub use status::{EXPIRY_WARNING, Provider, Status};
pub use verification::{Verification, Warning};

pub use crate::credential::{Capabilities, Capability, CredentialType};

pub const SECRET_MAX_CHARS: usize = 1024;
