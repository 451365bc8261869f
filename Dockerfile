# tidewater: provider, engine worker and dev chain in one image (the command picks the role).
# Not built on the development machine (it cannot pull base images); see README "Docker Compose".
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tidewater
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev
COPY pyproject.toml README.md ./
COPY tidewater ./tidewater
COPY provider ./provider
COPY operator_engine ./operator_engine
COPY contracts_abi ./contracts_abi
COPY datastore ./datastore
RUN pip install --no-cache-dir ".[postgres]"

ENV TIDEWATER_DATA_DIR=/var/lib/tidewater
EXPOSE 8030 8545
ENTRYPOINT ["tidewater"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8030"]
