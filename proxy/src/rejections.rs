//! The seam where hyper's bare rejections get their one-line reason.
//!
//! hyper answers a request head it cannot parse (400), one too large (431) or a target too long
//! (414) by itself, before the service sees a request, and with an empty body. The contract wants
//! every error body to be one plain-text line naming the cause, so the client connection's IO
//! recognises those automatic answers as hyper writes them and sends the same status with a body.
//!
//! This IO sits under every byte the sidecar writes, so it must never touch a response of the
//! service, least of all a forwarded body frame that an app (or an attacker behind it) shaped like
//! hyper's answer. It needs no guess at content for that: [`Responding`] is up from the moment
//! the service hands hyper a response until that response's body is gone (dropped by hyper) and
//! everything hyper queued before has been flushed. Only a write made while it is down can be
//! hyper's own, and only one that is exactly a bare head of hyper's automatic shape — a 4xx status
//! line, then `connection: close` and `content-length: 0` — is replaced.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use hyper::rt::{Read, ReadBufCursor, Write};

/// What hyper writes right after the status line of an automatic answer.
const AUTOMATIC: &[u8] = b"connection: close\r\ncontent-length: 0\r\n";
/// hyper's automatic answers are about 130 bytes: status line, the two headers above, Date.
const MAX_AUTOMATIC_LEN: usize = 512;

/// A client connection's IO, with hyper's bare rejections given their one-line reason.
pub struct ClientIo<T> {
    inner: T,
    responding: Responding,
    max_head_bytes: u64,
    /// Our answer in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

/// Nothing of the service's is being written: a bare automatic head may be replaced.
const IDLE: u8 = 0;
/// The service handed hyper a response whose body is not finished yet.
const BUSY: u8 = 1;
/// The body is gone, but hyper may still hold some of it queued: busy until the next flush.
const BODY_DONE: u8 = 2;

/// Whether a response of the service is on its way out on this connection. Shared by the
/// service (which raises it), the response's body (whose guard marks its end) and the IO.
#[derive(Clone, Default)]
pub struct Responding(Arc<AtomicU8>);

impl Responding {
    /// Called as the service hands hyper a response; returns the guard its body must carry.
    pub fn start(&self) -> BodyGuard {
        self.0.store(BUSY, Ordering::Relaxed);
        BodyGuard(self.clone())
    }

    /// Whether a write now may be hyper's own answer.
    fn idle(&self) -> bool {
        self.0.load(Ordering::Relaxed) == IDLE
    }

    /// After a completed flush: whatever the finished body left queued is out.
    fn flushed(&self) {
        let _ = self.0.compare_exchange(BODY_DONE, IDLE, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Carried by a response's body; dropping it (hyper drops a body when it is finished, cut or
/// not to be sent, as for HEAD) ends the response, once hyper has flushed what it queued.
pub struct BodyGuard(Responding);

pin_project_lite::pin_project! {
    /// A response body carrying guards that mark its end when dropped (a [`BodyGuard`], and
    /// whatever else the server ties to the response); otherwise the body itself, frame for
    /// frame.
    pub struct Guarded<B, G> {
        #[pin]
        body: B,
        guard: G,
    }
}

impl<B, G> Guarded<B, G> {
    pub fn new(body: B, guard: G) -> Self {
        Guarded { body, guard }
    }
}

impl<B: http_body::Body, G> http_body::Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        let _ = (self.0).0.compare_exchange(BUSY, BODY_DONE, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl<T> ClientIo<T> {
    pub fn new(inner: T, responding: Responding, max_head_bytes: u64) -> Self {
        ClientIo { inner, responding, max_head_bytes, replacement: None }
    }

    /// Takes the place of `head` when it is hyper's automatic answer; `true` when it did.
    fn replace(&mut self, head: &[u8]) -> bool {
        if !self.responding.idle() {
            return false;
        }
        match answer_in_place_of(head, self.max_head_bytes) {
            Some(answer) => {
                self.replacement = Some((answer, 0));
                true
            }
            None => false,
        }
    }
}

impl<T: Write + Unpin> ClientIo<T> {
    /// Writes what is left of a replacement answer; ready once there is none.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.replacement = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The answer to send instead of `head` when `head` is hyper's automatic one.
fn answer_in_place_of(head: &[u8], max_head_bytes: u64) -> Option<Vec<u8>> {
    // Every body write passes here, so the common case is decided on the first bytes and the
    // length alone, never by scanning a body (that cost 30% of the 1 MB scrape rate).
    if head.len() > MAX_AUTOMATIC_LEN || !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    // Exactly one head and nothing after it: hyper writes its automatic answer on its own.
    if head.windows(4).position(|w| w == b"\r\n\r\n")? + 4 != head.len() {
        return None;
    }
    let status_end = head.windows(2).position(|w| w == b"\r\n")? + 2;
    let status_line = &head[..status_end];
    let rest = head[status_end..].strip_prefix(AUTOMATIC)?;
    let code = status_line.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let reason = match code {
        b"431" => format!(
            "the request head is too large: over {max_head_bytes} bytes (limits.maxRequestHeadBytes) or over 100 header fields"
        ),
        b"414" => "the request target is too long".to_string(),
        b"400" => {
            "the request head is not valid HTTP/1.1: check the request line, the header syntax \
                and Content-Length/Transfer-Encoding"
                .to_string()
        }
        _ => return None,
    };
    let mut answer = Vec::with_capacity(head.len() + reason.len() + 80);
    answer.extend_from_slice(status_line);
    answer.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n");
    answer.extend_from_slice(format!("content-length: {}\r\n", reason.len() + 1).as_bytes());
    // The rest of hyper's head (its Date header) and the blank line.
    answer.extend_from_slice(rest);
    answer.extend_from_slice(reason.as_bytes());
    answer.push(b'\n');
    Some(answer)
}

impl<T: Read + Unpin> Read for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.replace(buf) {
            // Reported as written; what is left of ours goes out on the next write, flush or shutdown.
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (nonempty.next(), nonempty.next())
            && this.replace(only)
        {
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        // hyper flushes its IO only once its own write queue is empty.
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.responding.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::rt::TokioIo;

    use super::*;

    const HYPER_431: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: \
            0\r\ndate: Wed, 25 Nov 2026 18:31:42 GMT\r\n\r\n";

    fn parts(answer: &[u8]) -> (String, String) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn hyper_431_gets_a_one_line_body_naming_the_limit() {
        let (head, body) = parts(&answer_in_place_of(HYPER_431, 8192).unwrap());
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n")
                && head.contains("\r\nconnection: close\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())), "{head}");
        assert!(head.contains("\r\ndate: Wed, 25 Nov 2026"), "{head}");
        assert!(
            body.ends_with('\n') && body.lines().count() == 1 && body.contains("8192 bytes"),
            "{body}"
        );
    }

    #[test]
    fn hyper_400_gets_a_reason() {
        let head = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: \
            x\r\n\r\n";
        let (_, body) = parts(&answer_in_place_of(head, 8192).unwrap());
        assert!(body.starts_with("the request head is not valid HTTP/1.1"), "{body}");
    }

    #[test]
    fn other_writes_are_left_alone() {
        for write in [
            // Ours: a body follows the head in the same write.
            &b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\nHTTP/1.1 \
                200 OK\r\n\r\n"[..],
            // An app's 404 with headers of its own.
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nconnection: \
                close\r\ncontent-length: 0\r\n\r\n",
            // Not a status hyper answers by itself.
            b"HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            // A body chunk.
            b"# TYPE up gauge\nup 1\n",
        ] {
            assert!(
                answer_in_place_of(write, 8192).is_none(),
                "{}",
                String::from_utf8_lossy(write)
            );
        }
        // A body chunk is decided by its length, never scanned.
        let long = [
            &b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n"[..],
            &[b'x'; 600],
            b"\r\n\r\n",
        ]
        .concat();
        assert!(answer_in_place_of(&long, 8192).is_none());
    }

    #[test]
    fn nothing_is_replaced_from_hand_off_until_the_body_is_gone_and_flushed() {
        let responding = Responding::default();
        let mut io = ClientIo::new(TokioIo::new(tokio::io::sink()), responding.clone(), 8192);
        let guard = responding.start();
        assert!(!io.replace(HYPER_431), "the service's own head is never replaced");
        assert!(!io.replace(HYPER_431), "nor a body frame shaped like hyper's answer");
        drop(guard);
        assert!(!io.replace(HYPER_431), "hyper may still hold the body's last frames");
        let waker = std::task::Waker::noop();
        let flushed = Pin::new(&mut io).poll_flush(&mut Context::from_waker(waker));
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert!(io.replace(HYPER_431), "after the flush, hyper's bare answer is replaced");
    }

    #[test]
    fn a_flush_while_the_body_streams_does_not_end_the_response() {
        let responding = Responding::default();
        let mut io = ClientIo::new(TokioIo::new(tokio::io::sink()), responding.clone(), 8192);
        let _guard = responding.start();
        let waker = std::task::Waker::noop();
        let _ = Pin::new(&mut io).poll_flush(&mut Context::from_waker(waker));
        assert!(!io.replace(HYPER_431), "a frame written after a mid-body flush is the body's");
    }
}
