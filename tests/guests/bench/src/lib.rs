//! The benchmark plugin: a trivial handler, and loops of data operations.

use linli_sdk::{Error, Metadata, Plugin, Request, Response, data, export_plugin};

struct Bench;

impl Plugin for Bench {
    fn metadata() -> Metadata {
        Metadata::new("bench", "0.1.0", "基准测试", "Benchmark").require(
            "data",
            "基准测试",
            "benchmarking",
        )
    }

    fn handle(request: Request) -> Response {
        match request.path.as_str() {
            "/ping" => Response::status(204),
            "/get" => match data::get("bench/key") {
                Ok(v) => Response {
                    status: 200,
                    headers: vec![],
                    body: v.unwrap_or_default(),
                },
                Err(e) => Response::error(&e),
            },
            "/loop" => {
                let n: usize = request
                    .query_param("n")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(100);
                let set = request.query_param("op").as_deref() == Some("set");
                let run = || -> Result<(), Error> {
                    for i in 0..n {
                        let key = format!("bench/{}", i % 100);
                        if set {
                            data::set(&key, b"0123456789abcdef")?;
                        } else {
                            data::get(&key)?;
                        }
                    }
                    Ok(())
                };
                match run() {
                    Ok(()) => Response::status(204),
                    Err(e) => Response::error(&e),
                }
            }
            _ => Response::status(404),
        }
    }
}

export_plugin!(Bench);
