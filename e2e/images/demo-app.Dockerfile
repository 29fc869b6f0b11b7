# The demo app: the seed's identity-service as monitoring sees it (e2e/src/bin/demo-app.rs).
# Built by the e2e tests on the Debian base image (scripts/build-base-image), which has the libc
# the test-built binary links against. The context holds only the binary.
ARG BASE
FROM ${BASE}
COPY demo-app /usr/local/bin/demo-app
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/demo-app"]
CMD ["127.0.0.1:8080"]
