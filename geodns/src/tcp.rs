//! TCP serving on hickory-server's `Server` with our [`RequestHandler`]: hickory frames
//! messages, applies the idle timeout and answers unparsable requests with FORMERR.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Header, ResponseCode};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::warn;

use crate::answer::prepare;
use crate::state::State;

/// The TCP side: hickory-server calls this per framed message.
pub(crate) struct TcpHandler(pub(crate) Arc<State>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let snap = self.0.current.load();
        let p = prepare(&snap, request, request.src().ip());
        let (qtype, rcode, ecs) = (p.qtype, p.metadata.response_code, p.ecs);
        let metadata = p.metadata;
        let response = MessageResponseBuilder::new(&request.queries, p.edns.as_ref()).build(
            metadata,
            p.answers.iter().copied(),
            std::iter::empty(),
            p.soa,
            std::iter::empty(),
        );
        let result = response_handle.send_response(response).await;
        self.0.metrics.query(qtype, rcode, ecs, started.elapsed());
        match result {
            Ok(info) => info,
            Err(e) => {
                warn!(src = %request.src(), error = %e, "cannot send TCP answer");
                let mut meta = metadata;
                meta.response_code = ResponseCode::ServFail;
                Header {
                    metadata: meta,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}
