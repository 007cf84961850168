//! Lambda entry point of firehose-transformer: configuration once, then the runtime loop.

use firehose_transformer::Processor;

/// mimalloc keeps freed pages for the next batch instead of handing multi-megabyte buffers
/// back to the kernel after every invocation (measured: about a sixth of a batch's time went
/// to page faults with the system allocator; `cargo bench -p firehose-transformer`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The batch is read from the request body in place and the response sent from the buffer
    // it was built in: a 6 MB event is neither copied into owned strings nor serialised twice.
    tributary::runtime::serve_raw(
        async |env: &tributary::Env| Processor::from_env(env),
        |processor, body, ctx| async move { processor.handle_raw(&body, &ctx.request_id) },
    )
    .await
}
