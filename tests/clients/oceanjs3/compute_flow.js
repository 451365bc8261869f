// A whole free compute job with ocean.js 3.4.6, written the way ocean.js's own
// ComputeExamples.md (test/integration/ComputeExamples.test.ts) writes it: createAsset with
// NftFactory + ProviderInstance.encrypt + Nft.setMetadata, Datatoken.mint to the consumer,
// getComputeEnvironments -> the env with priceMin === 0, initializeCompute, handleOrder
// (approveWei when providerFeeAmount is truthy, then startOrder / reuseOrder), computeStart,
// computeStatus polled every 2 s, getComputeResultUrl + downloadFile for every result.
//
// The Aquarius is tidewater's embedded Aquarius read API (metadataCacheUri = the provider URL):
// Aquarius.waitForIndexer resolves both assets from it. One departure: tidewater offers no
// Aquarius.validate, so the metadata hash it would return is computed here (the sha256 of the
// DDO as encrypted, which tidewater checks when it decrypts the DDO).
//
// Input: environment variables (see `need` below). Output: progress lines on stderr and one
// JSON summary line on stdout. Exit code 1 on any failure, with the reason on stderr.
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const http = require('http')
const path = require('path')
const { SHA256 } = require('crypto-js')
const { ethers, providers } = require('ethers')
const {
  ProviderInstance,
  Aquarius,
  NftFactory,
  Datatoken,
  Nft,
  ZERO_ADDRESS,
  approveWei,
  transfer,
  ConfigHelper,
  getEventFromTx,
  downloadFile,
  sleep
} = require('@oceanprotocol/lib')

function need(name) {
  const value = process.env[name]
  if (!value) throw new Error(`environment variable ${name} is required`)
  return value
}

const NODE_URI = need('NODE_URI')
const PROVIDER_URL = need('PROVIDER_URL')
const ADDRESS_FILE = need('ADDRESS_FILE')
const RESULTS_DIR = need('RESULTS_DIR')
const POLL_MS = 2000 // ComputeExamples' users poll status every few seconds
const JOB_TIMEOUT_MS = Number(process.env.JOB_TIMEOUT_MS || 240000)

// Count HTTP requests to the provider and the TCP connections that carried them. ocean.js
// (cross-fetch -> node-fetch) uses Node's global agent, which keeps connections alive (5 s idle):
// many requests over few connections shows keep-alive at work, as it is for dApps.
const providerPort = String(new URL(PROVIDER_URL).port)
const traffic = { requests: 0, connections: 0 }
const originalRequest = http.request
http.request = function (...args) {
  const target = args.find((a) => a && typeof a === 'object' && !(a instanceof URL))
  if (target && String(target.port) === providerPort) traffic.requests++
  return originalRequest.apply(this, args)
}
const originalCreateConnection = http.globalAgent.createConnection
http.globalAgent.createConnection = function (options, ...rest) {
  if (String(options.port) === providerPort) traffic.connections++
  return originalCreateConnection.call(this, options, ...rest)
}

function log(message) {
  process.stderr.write(`[oceanjs3] ${message}\n`)
}

let config
let addresses
let datatoken

const DATASET_ASSET_URL = {
  datatokenAddress: '0x0',
  nftAddress: '0x0',
  files: [{ type: 'url', url: need('DATASET_URL'), method: 'GET' }]
}

const ALGORITHM_ASSET_URL = {
  datatokenAddress: '0x0',
  nftAddress: '0x0',
  files: [{ type: 'url', url: need('ALGORITHM_URL'), method: 'GET' }]
}

const DATASET_DDO = {
  '@context': ['https://w3id.org/did/v1'],
  id: 'id:op:efba17455c127a885ec7830d687a8f6e64f5ba559f8506f8723c1f10f05c049c',
  version: '4.1.0',
  chainId: 8996,
  nftAddress: '0x0',
  metadata: {
    created: '2021-12-20T14:35:20Z',
    updated: '2021-12-20T14:35:20Z',
    type: 'dataset',
    name: 'dataset-name',
    description: 'Ocean protocol test dataset description',
    author: 'oceanprotocol-team',
    license: 'https://market.oceanprotocol.com/terms',
    additionalInformation: { termsAndConditions: true }
  },
  services: [
    {
      id: 'notAnId',
      type: 'compute',
      files: '',
      datatokenAddress: '0xa15024b732A8f2146423D14209eFd074e61964F3',
      serviceEndpoint: 'https://v4.provider.goerli.oceanprotocol.com/',
      timeout: 300,
      compute: {
        publisherTrustedAlgorithmPublishers: [],
        publisherTrustedAlgorithms: [],
        allowRawAlgorithm: true,
        allowNetworkAccess: true
      }
    }
  ]
}

const ALGORITHM_DDO = {
  '@context': ['https://w3id.org/did/v1'],
  id: 'did:op:efba17455c127a885ec7830d687a8f6e64f5ba559f8506f8723c1f10f05c049c',
  version: '4.1.0',
  chainId: 8996,
  nftAddress: '0x0',
  metadata: {
    created: '2021-12-20T14:35:20Z',
    updated: '2021-12-20T14:35:20Z',
    type: 'algorithm',
    name: 'algorithm-name',
    description: 'Ocean protocol test algorithm description',
    author: 'oceanprotocol-team',
    license: 'https://market.oceanprotocol.com/terms',
    additionalInformation: { termsAndConditions: true },
    algorithm: {
      language: 'python',
      version: '1.0.0',
      container: {
        entrypoint: need('ALGO_ENTRYPOINT'),
        image: need('ALGO_IMAGE'),
        tag: need('ALGO_TAG'),
        checksum: need('ALGO_CHECKSUM')
      }
    }
  },
  services: [
    {
      id: 'notAnId',
      type: 'access',
      files: '',
      datatokenAddress: '0xa15024b732A8f2146423D14209eFd074e61964F3',
      serviceEndpoint: 'https://v4.provider.goerli.oceanprotocol.com',
      timeout: 300
    }
  ]
}

async function createAsset(name, symbol, owner, assetUrl, ddo, providerUrl) {
  const nft = new Nft(owner, (await owner.provider.getNetwork()).chainId)
  const nftFactory = new NftFactory(addresses.ERC721Factory, owner, await owner.getChainId())
  const chain = (await owner.provider.getNetwork()).chainId
  ddo.chainId = parseInt(chain.toString(10))
  const nftParamsAsset = {
    name,
    symbol,
    templateIndex: 1,
    tokenURI: 'aaa',
    transferable: true,
    owner: await owner.getAddress()
  }
  const datatokenParams = {
    templateIndex: 1,
    cap: '100000',
    feeAmount: '0',
    paymentCollector: ZERO_ADDRESS,
    feeToken: ZERO_ADDRESS,
    minter: await owner.getAddress(),
    mpFeeAddress: ZERO_ADDRESS
  }
  const bundleNFT = await nftFactory.createNftWithDatatoken(nftParamsAsset, datatokenParams)
  const trxReceipt = await bundleNFT.wait()
  const nftCreatedEvent = getEventFromTx(trxReceipt, 'NFTCreated')
  const tokenCreatedEvent = getEventFromTx(trxReceipt, 'TokenCreated')
  const nftAddress = nftCreatedEvent.args.newTokenAddress
  const datatokenAddressAsset = tokenCreatedEvent.args.newTokenAddress
  assetUrl.datatokenAddress = datatokenAddressAsset
  assetUrl.nftAddress = nftAddress
  ddo.services[0].files = await ProviderInstance.encrypt(assetUrl, chain, providerUrl)
  ddo.services[0].datatokenAddress = datatokenAddressAsset
  ddo.services[0].serviceEndpoint = providerUrl
  ddo.nftAddress = nftAddress
  ddo.id = 'did:op:' + SHA256(ethers.utils.getAddress(nftAddress) + chain.toString(10))
  const encryptedResponse = await ProviderInstance.encrypt(ddo, chain, providerUrl)
  // What Aquarius.validate(ddo).hash would be: the sha256 of the document as encrypted.
  const metadataHash =
    '0x' + crypto.createHash('sha256').update(JSON.stringify(ddo)).digest('hex')
  await nft.setMetadata(
    nftAddress,
    await owner.getAddress(),
    0,
    providerUrl,
    '',
    ethers.utils.hexlify(2),
    encryptedResponse,
    metadataHash
  )
  return ddo.id
}

async function handleOrder(
  order,
  datatokenAddress,
  payerAccount,
  consumerAccount,
  serviceIndex,
  consumeMarkerFee
) {
  /* We do have 3 possible situations:
     - have validOrder and no providerFees -> then order is valid, providerFees are valid, just use it in startCompute
     - have validOrder and providerFees -> then order is valid but providerFees are not valid, we need to call reuseOrder and pay only providerFees
     - no validOrder -> we need to call startOrder, to pay 1 DT & providerFees
  */
  if (order.providerFee && order.providerFee.providerFeeAmount) {
    await approveWei(
      payerAccount,
      config,
      await payerAccount.getAddress(),
      order.providerFee.providerFeeToken,
      datatokenAddress,
      order.providerFee.providerFeeAmount
    )
  }
  if (order.validOrder) {
    if (!order.providerFee) return order.validOrder
    const tx = await datatoken.reuseOrder(datatokenAddress, order.validOrder, order.providerFee)
    const reusedTx = await tx.wait()
    const orderReusedTx = getEventFromTx(reusedTx, 'OrderReused')
    return orderReusedTx.transactionHash
  }
  const tx = await datatoken.startOrder(
    datatokenAddress,
    consumerAccount,
    serviceIndex,
    order.providerFee,
    consumeMarkerFee
  )
  const orderTx = await tx.wait()
  const orderStartedTx = getEventFromTx(orderTx, 'OrderStarted')
  return orderStartedTx.transactionHash
}

/**
 * ComputeExamples' section 10 and 11.1: initializeCompute, handleOrder for the algorithm and
 * every dataset (writing transferTxId into the same objects, as the example does), computeStart,
 * then computeStatus every 2 s until the job ends.
 */
async function orderAndRun(consumerAccount, computeEnv, assets, algo, dtAddressArray, computeValidUntil) {
  const providerUrl = config.providerUri
  const providerInitializeComputeResults = await ProviderInstance.initializeCompute(
    assets,
    algo,
    computeEnv.id,
    computeValidUntil,
    providerUrl,
    await consumerAccount.getAddress()
  )
  if ('error' in providerInitializeComputeResults) {
    throw new Error(`initializeCompute: ${JSON.stringify(providerInitializeComputeResults)}`)
  }
  log('ordering both assets with the provider fees')
  algo.transferTxId = await handleOrder(
    providerInitializeComputeResults.algorithm,
    ALGORITHM_DDO.services[0].datatokenAddress,
    consumerAccount,
    computeEnv.consumerAddress,
    0
  )
  for (let i = 0; i < providerInitializeComputeResults.datasets.length; i++) {
    assets[i].transferTxId = await handleOrder(
      providerInitializeComputeResults.datasets[i],
      dtAddressArray[i],
      consumerAccount,
      computeEnv.consumerAddress,
      0
    )
  }
  const computeJobs = await ProviderInstance.computeStart(
    providerUrl,
    consumerAccount,
    computeEnv.id,
    assets[0],
    algo
  )
  if (!computeJobs) throw new Error('computeStart failed (see the ocean.js log above)')
  const computeJobId = computeJobs[0].jobId
  const agreementId = computeJobs[0].agreementId
  log(`job ${computeJobId} started`)

  const statuses = []
  const deadline = Date.now() + JOB_TIMEOUT_MS
  let jobStatus
  for (;;) {
    const reply = await ProviderInstance.computeStatus(
      providerUrl,
      await consumerAccount.getAddress(),
      computeJobId,
      agreementId
    )
    jobStatus = Array.isArray(reply) ? reply[0] : reply
    if (statuses[statuses.length - 1] !== jobStatus.status) {
      statuses.push(jobStatus.status)
      log(`status ${jobStatus.status} ${jobStatus.statusText}`)
    }
    if (jobStatus.status >= 70 || Date.now() > deadline) break
    await sleep(POLL_MS)
  }

  return {
    initialize: providerInitializeComputeResults,
    orders: { algorithm: algo.transferTxId, dataset: assets[0].transferTxId },
    jobId: computeJobId,
    agreementId,
    statuses,
    final: jobStatus
  }
}

async function run() {
  const provider = new providers.JsonRpcProvider(NODE_URI)
  const publisherAccount = new ethers.Wallet(need('PUBLISHER_KEY'), provider)
  const consumerAccount = new ethers.Wallet(need('CONSUMER_KEY'), provider)
  const chainId = (await provider.getNetwork()).chainId
  config = new ConfigHelper().getConfig(chainId)
  config.providerUri = PROVIDER_URL
  const providerUrl = config.providerUri
  config.metadataCacheUri = providerUrl // tidewater's embedded Aquarius read API
  const aquariusInstance = new Aquarius(config.metadataCacheUri)
  addresses = JSON.parse(fs.readFileSync(ADDRESS_FILE, 'utf8')).development

  // what a market checks before it lets a user publish against a provider URL
  if (!(await ProviderInstance.isValidProvider(providerUrl))) {
    throw new Error(`isValidProvider(${providerUrl}) is false`)
  }
  // ComputeExamples 5.2: send some OCEAN to the consumer (pays the paid environment below)
  const sent = await transfer(
    publisherAccount,
    config,
    addresses.Ocean,
    await consumerAccount.getAddress(),
    '100'
  )
  await sent.wait()
  log('publishing the dataset and the algorithm')
  const datasetId = await createAsset(
    'D1Min', 'D1M', publisherAccount, DATASET_ASSET_URL, DATASET_DDO, providerUrl
  )
  const algorithmId = await createAsset(
    'D1Min', 'D1M', publisherAccount, ALGORITHM_ASSET_URL, ALGORITHM_DDO, providerUrl
  )
  // ComputeExamples 7.1 (polling every 0.5 s instead of 3 s, for at most 60 s)
  const resolvedDatasetDdo = await aquariusInstance.waitForIndexer(datasetId, null, null, 500, 120)
  const resolvedAlgorithmDdo = await aquariusInstance.waitForIndexer(
    algorithmId, null, null, 500, 120
  )
  if (!resolvedDatasetDdo || !resolvedAlgorithmDdo) throw new Error('the assets were not indexed')
  // what a market shows before ordering: the provider can reach the dataset's files
  const [datasetFile] = await ProviderInstance.checkDidFiles(
    datasetId,
    resolvedDatasetDdo.services[0].id,
    providerUrl
  )
  if (!datasetFile || !datasetFile.valid) throw new Error(`checkDidFiles: ${JSON.stringify(datasetFile)}`)

  log('minting datatokens to the consumer')
  const publisherDatatoken = new Datatoken(publisherAccount, chainId)
  await publisherDatatoken.mint(
    resolvedDatasetDdo.services[0].datatokenAddress,
    await publisherAccount.getAddress(),
    '10',
    await consumerAccount.getAddress()
  )
  await publisherDatatoken.mint(
    resolvedAlgorithmDdo.services[0].datatokenAddress,
    await publisherAccount.getAddress(),
    '10',
    await consumerAccount.getAddress()
  )

  const computeEnvs = await ProviderInstance.getComputeEnvironments(providerUrl)
  datatoken = new Datatoken(consumerAccount, chainId)
  const computeEnv = computeEnvs[resolvedDatasetDdo.chainId].find((ce) => ce.priceMin === 0)
  if (!computeEnv) throw new Error(`no free compute environment: ${JSON.stringify(computeEnvs)}`)
  log(`free compute environment ${computeEnv.id}, fee token ${computeEnv.feeToken}`)

  const mytime = new Date()
  const computeMinutes = 5
  mytime.setMinutes(mytime.getMinutes() + computeMinutes)
  const computeValidUntil = Math.floor(mytime.getTime() / 1000)
  const assets = [
    { documentId: resolvedDatasetDdo.id, serviceId: resolvedDatasetDdo.services[0].id }
  ]
  const dtAddressArray = [resolvedDatasetDdo.services[0].datatokenAddress]
  const algo = {
    documentId: resolvedAlgorithmDdo.id,
    serviceId: resolvedAlgorithmDdo.services[0].id
  }
  const job = await orderAndRun(
    consumerAccount, computeEnv, assets, algo, dtAddressArray, computeValidUntil
  )
  const providerInitializeComputeResults = job.initialize
  const computeJobId = job.jobId
  const agreementId = job.agreementId
  const statuses = job.statuses
  const jobStatus = job.final

  const downloads = []
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  for (const [index, result] of (jobStatus.results || []).entries()) {
    const downloadURL = await ProviderInstance.getComputeResultUrl(
      providerUrl,
      consumerAccount,
      computeJobId,
      index
    )
    const { data, filename } = await downloadFile(downloadURL, index)
    const bytes = Buffer.from(data)
    fs.writeFileSync(path.join(RESULTS_DIR, `${index}-${path.basename(result.filename)}`), bytes)
    downloads.push({
      index,
      filename: result.filename,
      type: result.type,
      served_as: filename,
      size: bytes.length,
      sha256: crypto.createHash('sha256').update(bytes).digest('hex')
    })
  }

  // what a dApp offers next: stop (a finished job stays finished), then delete
  log('stopping and deleting the job')
  const stopped = await ProviderInstance.computeStop(
    datasetId,
    await consumerAccount.getAddress(),
    computeJobId,
    providerUrl,
    consumerAccount,
    agreementId
  )
  const deleted = await ProviderInstance.computeDelete(
    datasetId,
    consumerAccount,
    computeJobId,
    providerUrl
  )
  let afterDelete
  try {
    afterDelete = await ProviderInstance.computeStatus(
      providerUrl,
      await consumerAccount.getAddress(),
      computeJobId
    )
  } catch (e) {
    afterDelete = { error: String(e.message || e) }
  }

  // a dApp's "compute again": the same asset objects (they now carry transferTxId, as in the
  // example) go through initializeCompute -> handleOrder -> computeStart once more
  log('computing again with the same asset objects')
  const again = await orderAndRun(
    consumerAccount, computeEnv, assets, algo, dtAddressArray, computeValidUntil
  )

  // Ocean Market's way with a paid environment: the same handleOrder, now approving a real fee
  // that startOrder moves to the provider, on new orders (fresh asset objects)
  const paidEnv = computeEnvs[resolvedDatasetDdo.chainId].find((ce) => ce.priceMin > 0)
  if (!paidEnv) throw new Error(`no paid compute environment: ${JSON.stringify(computeEnvs)}`)
  log(`paid compute environment ${paidEnv.id}, ${paidEnv.priceMin} ${paidEnv.feeToken} a minute`)
  const ocean = new ethers.Contract(
    paidEnv.feeToken,
    ['function balanceOf(address) view returns (uint256)'],
    provider
  )
  const balanceBefore = await ocean.balanceOf(await consumerAccount.getAddress())
  const paid = await orderAndRun(
    consumerAccount,
    paidEnv,
    [{ documentId: resolvedDatasetDdo.id, serviceId: resolvedDatasetDdo.services[0].id }],
    { documentId: resolvedAlgorithmDdo.id, serviceId: resolvedAlgorithmDdo.services[0].id },
    dtAddressArray,
    computeValidUntil
  )
  const balanceAfter = await ocean.balanceOf(await consumerAccount.getAddress())
  paid.consumerPaid = balanceBefore.sub(balanceAfter).toString()

  const summary = {
    resolved: { dataset: resolvedDatasetDdo, algorithm: resolvedAlgorithmDdo },
    datasetId,
    algorithmId,
    environment: computeEnv,
    initialize: providerInitializeComputeResults,
    jobId: computeJobId,
    agreementId,
    statuses,
    final: jobStatus,
    downloads,
    stopped,
    deleted,
    afterDelete,
    orders: job.orders,
    again,
    paid,
    traffic
  }
  process.stdout.write(JSON.stringify(summary) + '\n')
}

run().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`[oceanjs3] FAILED: ${error && error.stack ? error.stack : error}\n`)
    process.exit(1)
  }
)
