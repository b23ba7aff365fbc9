# Builds the one nines binary; each role runs it with a different subcommand.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin nines

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/nines nines && mkdir -p /var/lib/nines/data && chown -R nines /var/lib/nines
COPY --from=build /src/target/release/nines /usr/local/bin/nines
USER nines
WORKDIR /var/lib/nines
ENV NINES__DATA_DIR=/var/lib/nines/data
ENTRYPOINT ["nines"]
