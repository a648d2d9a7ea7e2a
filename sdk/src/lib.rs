//! # linli-sdk — write linli plugins in Rust
//!
//! A linli plugin is an ordinary `cdylib` crate built with
//! `cargo build --target wasm32-wasip2 --release`. Implement [`Plugin`] (every hook but
//! [`Plugin::metadata`] has a default), route requests with [`Router`], keep state with
//! [`data`], and export it with [`export_plugin!`]:
//!
//! ```no_run
//! use linli_sdk::{Metadata, Plugin, Request, Response, Router, data, export_plugin};
//!
//! struct Counter;
//!
//! impl Plugin for Counter {
//!     fn metadata() -> Metadata {
//!         Metadata::new("counter", "0.1.0", "计数器", "Counter")
//!             .require("data", "保存计数", "keep the count")
//!     }
//!
//!     fn handle(request: Request) -> Response {
//!         Router::new()
//!             .get("/", |_req, _params| {
//!                 let visits = data::increment("visits", 1)?;
//!                 Ok(Response::json(200, &serde_json::json!({ "visits": visits })))
//!             })
//!             .handle(request)
//!     }
//! }
//!
//! export_plugin!(Counter);
//! ```
//!
//! The generated WIT bindings stay private (`__private`); everything a vendor needs is
//! re-exported here with Rust-friendly types.

pub mod data;
mod error;
pub mod http;
pub mod log;
mod metadata;
pub mod services;
pub mod time;
/// Pages for the web shell: the declarative schema, its builders and form checking.
pub use linli_ui as ui;

pub use error::Error;
pub use http::{Params, Request, Response, Router};
pub use metadata::Metadata;

/// An event delivered to [`Plugin::on_event`].
pub use __private::exports::linli::plugin::events::Event;
/// Device telemetry, a message from another plugin, or a scheduled tick.
pub use __private::exports::linli::plugin::events::{Message, Telemetry, Tick};

/// A linli plugin. One fresh instance runs each call, so keep state in [`data`], not in
/// statics.
pub trait Plugin {
    /// Who the plugin is and what it needs. Must not call host capabilities.
    fn metadata() -> Metadata;

    /// Handle a request from the gateway (`/t/{tenant}/p/{plugin}/…`). Default: 404.
    fn handle(request: Request) -> Response {
        let _ = request;
        Response::error(&Error::NotFound("没有这个页面 / no such page".into()))
    }

    /// Handle telemetry, an inter-plugin message or a tick. Default: ignore it.
    fn on_event(event: Event) -> Result<(), String> {
        let _ = event;
        Ok(())
    }

    /// Called once when installed at a tenant. Default: nothing.
    fn on_install() -> Result<(), String> {
        Ok(())
    }

    /// Called once when this version replaces `previous_version` at a tenant, before it
    /// serves. Migrate stored data here. Default: nothing.
    fn on_upgrade(previous_version: &str) -> Result<(), String> {
        let _ = previous_version;
        Ok(())
    }
}

/// Export a [`Plugin`] implementation as the component's `linli:plugin` world.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __LinliPluginExport;

        impl $crate::__private::exports::linli::plugin::http::Guest for __LinliPluginExport {
            fn handle(
                request: $crate::__private::exports::linli::plugin::http::Request,
            ) -> $crate::__private::exports::linli::plugin::http::Response {
                $crate::__private::handle::<$plugin>(request)
            }
        }

        impl $crate::__private::exports::linli::plugin::events::Guest for __LinliPluginExport {
            fn handle_event(
                event: $crate::__private::exports::linli::plugin::events::Event,
            ) -> ::core::result::Result<(), ::std::string::String> {
                <$plugin as $crate::Plugin>::on_event(event)
            }
        }

        impl $crate::__private::exports::linli::plugin::lifecycle::Guest for __LinliPluginExport {
            fn describe() -> $crate::__private::exports::linli::plugin::lifecycle::Metadata {
                <$plugin as $crate::Plugin>::metadata().into_wit()
            }

            fn on_install() -> ::core::result::Result<(), ::std::string::String> {
                <$plugin as $crate::Plugin>::on_install()
            }

            fn on_upgrade(previous_version: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                <$plugin as $crate::Plugin>::on_upgrade(&previous_version)
            }
        }

        $crate::__private::__export_linli_plugin_world!(__LinliPluginExport with_types_in $crate::__private);
    };
}

#[doc(hidden)]
pub mod __private {
    wit_bindgen::generate!({
        path: "../wit",
        world: "linli:plugin/plugin",
        pub_export_macro: true,
        export_macro_name: "__export_linli_plugin_world",
        default_bindings_module: "linli_sdk::__private",
        generate_all,
    });

    use crate::Plugin;

    /// The glue behind `http::Guest::handle`.
    pub fn handle<P: Plugin>(
        request: exports::linli::plugin::http::Request,
    ) -> exports::linli::plugin::http::Response {
        P::handle(crate::Request::from_wit(request)).into_wit()
    }
}
