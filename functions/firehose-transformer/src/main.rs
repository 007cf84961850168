//! Lambda entry point of firehose-transformer: configuration once, then the runtime loop.

use firehose_transformer::Processor;
use firehose_transformer::event::Invocation;
use lambda_runtime::LambdaEvent;

/// mimalloc keeps freed pages for the next batch instead of handing multi-megabyte buffers
/// back to the kernel after every invocation (measured: about a sixth of a batch's time went
/// to page faults with the system allocator; `cargo bench -p firehose-transformer`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tributary::runtime::serve(
        async |env: &tributary::Env| Processor::from_env(env),
        |processor, event: LambdaEvent<Invocation>| async move { processor.handle(event).await },
    )
    .await
}
