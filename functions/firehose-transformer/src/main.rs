//! Lambda entry point of firehose-transformer: configuration once, then the runtime loop.

use std::sync::Arc;

use firehose_transformer::Processor;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tributary::Env;

/// mimalloc keeps freed pages for the next batch instead of handing multi-megabyte buffers
/// back to the kernel after every invocation (measured: about a sixth of a batch's time went
/// to page faults with the system allocator; `cargo bench -p firehose-transformer`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let env = Env::from_process();
    tributary::observability::init_tracing(&env);
    let processor = match Processor::from_env(&env) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::error!(error_type = e.error_type(), "{e}");
            tributary::runtime::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<firehose_transformer::event::Invocation>| {
            let processor = processor.clone();
            async move { processor.handle(event).await }
        },
    ))
    .await
}
