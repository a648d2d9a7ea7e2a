//! Host-side bindings generated from `wit/` (package `linli:plugin@0.1.0`).
//!
//! This is the only place `bindgen!` runs on the host. When a new contract version ships, it
//! gets a sibling module and the runtime dispatches on the version a component was built for.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "linli:plugin/plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use self::exports::linli::plugin::events::Event;
pub use self::exports::linli::plugin::http::{Request, Response};
pub use self::exports::linli::plugin::lifecycle::Metadata;
pub use self::linli::plugin::types::{Error as WitError, Header};
