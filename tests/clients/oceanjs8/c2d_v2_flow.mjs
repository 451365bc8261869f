// Drives tidewater's /node API with @oceanprotocol/lib 8.6.2 the way the library's own compute
// examples do (ProviderInstance + EscrowContract + Datatoken orders), on a local chain.
//
// Input: the JSON object in $FLOW_INPUT:
//   {nodeUri, rpcUrl, chainId, consumerKey, paymentToken, flows: ["free", "paid"],
//    datasetDid, algorithmDid}
// DDOs are resolved through the node itself (new Aquarius(nodeUri)), as dApps do.
// Output: progress lines on stderr; one JSON object on stdout's last line with, per flow, the
// job, its statuses, the downloaded results (sha256, size) and, for the paid flow, the payment
// terms and the consumer's escrow funds before and after.
import { createHash } from 'node:crypto'
import { ethers } from 'ethers'
import {
  Aquarius,
  Datatoken,
  EscrowContract,
  ProviderInstance,
  unitsToAmount
} from '@oceanprotocol/lib'

const input = JSON.parse(process.env.FLOW_INPUT)
const log = (...args) => console.error('[oceanjs8]', ...args)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ethers caches identical RPC calls for 250 ms: back-to-back transactions would reuse a nonce.
const provider = new ethers.JsonRpcProvider(input.rpcUrl, undefined, { cacheTimeout: -1 })
const consumer = new ethers.Wallet(input.consumerKey, provider)
const nodeUri = input.nodeUri
const chainId = Number(input.chainId)

// The library's own handleOrder: reuse a valid order, else start one naming the environment's
// consumerAddress as consumer, with the provider fee initializeCompute returned.
async function handleOrder(order, datatokenAddress, consumerAddress) {
  const datatoken = new Datatoken(consumer, chainId)
  if (order.validOrder && !order.providerFee) return order.validOrder
  if (order.validOrder) {
    const tx = await datatoken.reuseOrder(datatokenAddress, order.validOrder, order.providerFee)
    if (!tx) throw new Error('reuseOrder failed')
    return tx.hash
  }
  const tx = await datatoken.startOrder(datatokenAddress, consumerAddress, 0, order.providerFee)
  if (!tx) throw new Error('startOrder failed')
  return tx.hash
}

const aquarius = new Aquarius(nodeUri)
const datasetDdo = await aquarius.waitForIndexer(input.datasetDid)
const algorithmDdo = await aquarius.resolve(input.algorithmDid)
if (!datasetDdo || !algorithmDdo) throw new Error('DDOs not resolved through the node')

function items() {
  const assets = [{ documentId: datasetDdo.id, serviceId: datasetDdo.services[0].id }]
  const algo = {
    documentId: algorithmDdo.id,
    serviceId: algorithmDdo.services[0].id,
    meta: algorithmDdo.metadata.algorithm
  }
  return { assets, algo }
}

async function orderAll(init, assets, algo, env) {
  algo.transferTxId = await handleOrder(
    init.algorithm, algorithmDdo.services[0].datatokenAddress, env.consumerAddress
  )
  for (let i = 0; i < init.datasets.length; i++) {
    assets[i].transferTxId = await handleOrder(
      init.datasets[i], datasetDdo.services[0].datatokenAddress, env.consumerAddress
    )
  }
}

async function follow(jobId) {
  const seen = []
  const deadline = Date.now() + 180_000
  for (;;) {
    const [job] = await ProviderInstance.computeStatus(nodeUri, consumer, jobId)
    if (seen[seen.length - 1] !== job.status) {
      seen.push(job.status)
      log(`job ${jobId} ${job.status} ${job.statusText}`)
    }
    if (job.dateFinished && job.status !== 71) return { job, seen }
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not finish: ${JSON.stringify(job)}`)
    await sleep(300)
  }
}

async function collect(stream) {
  const parts = []
  for await (const chunk of stream) parts.push(Buffer.from(chunk))
  return Buffer.concat(parts)
}

async function download(job) {
  const results = []
  for (const result of job.results) {
    const url = await ProviderInstance.getComputeResultUrl(nodeUri, consumer, job.jobId, result.index)
    const response = await fetch(url)
    if (!response.ok) throw new Error(`result ${result.index}: HTTP ${response.status}`)
    const body = Buffer.from(await response.arrayBuffer())
    results.push({
      index: result.index,
      filename: result.filename,
      type: result.type,
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex')
    })
  }
  // resume the first output from byte 1, as getComputeResult does with an offset (Range)
  const first = job.results.find((r) => r.type === 'output')
  const tail = await collect(await ProviderInstance.getComputeResult(nodeUri, consumer, job.jobId, first.index, 1))
  return { results, resumedFrom1: { index: first.index, size: tail.length, sha256: createHash('sha256').update(tail).digest('hex') } }
}

async function freeFlow(envs) {
  const env = envs.find((e) => e.free)
  if (!env) throw new Error('no environment with a free tier')
  const { assets, algo } = items()
  // tidewater requires orders of published assets on free jobs too: initializeCompute gives
  // the provider fees (amount 0) to order with.
  const validUntil = Math.floor(Date.now() / 1000) + 300
  const init = await ProviderInstance.initializeCompute(
    assets, algo, env.id, input.paymentToken, validUntil, nodeUri,
    await consumer.getAddress(), undefined, chainId
  )
  await orderAll(init, assets, algo, env)
  const jobs = await ProviderInstance.freeComputeStart(nodeUri, consumer, env.id, assets, algo)
  if (!jobs) throw new Error('freeComputeStart returned nothing')
  const jobId = jobs[0].jobId
  log(`free job ${jobId} on ${env.id}`)
  const logs = await ProviderInstance.computeStreamableLogs(nodeUri, consumer, jobId)
  const streamed = logs ? (await collect(logs)).toString('utf8') : null
  const { job, seen } = await follow(jobId)
  const downloaded = await download(job)
  return { env: env.id, jobId, statuses: seen, job, streamedLog: streamed, ...downloaded, tokens: await tokens(jobId) }
}

// An auth token instead of the signer: generate, use (computeStop), invalidate, refused.
async function tokens(jobId) {
  const token = await ProviderInstance.generateAuthToken(consumer, nodeUri)
  const [stopped] = await ProviderInstance.computeStop(jobId, nodeUri, token)
  await ProviderInstance.invalidateAuthToken(consumer, token, nodeUri)
  let refusedAfter = null
  try {
    await ProviderInstance.computeStop(jobId, nodeUri, token)
  } catch (e) {
    refusedAfter = String(e.message)
  }
  return { stoppedWithToken: stopped.status, refusedAfter }
}

async function paidFlow(envs) {
  const env = envs[0]
  const { assets, algo } = items()
  const fee = env.fees[String(chainId)][0]
  if (fee.feeToken.toLowerCase() !== input.paymentToken.toLowerCase()) throw new Error('fee token mismatch')
  const resources = [
    { id: 'cpu', amount: env.resources[0].max },
    { id: 'ram', amount: env.resources[1].max },
    { id: 'disk', amount: 0 }
  ]
  const mytime = new Date()
  mytime.setMinutes(mytime.getMinutes() + 5)
  const computeValidUntil = Math.floor(mytime.getTime() / 1000)
  const init = await ProviderInstance.initializeCompute(
    assets, algo, env.id, input.paymentToken, computeValidUntil, nodeUri,
    await consumer.getAddress(), resources, chainId
  )
  const payment = init.payment
  log(`payment terms ${JSON.stringify(payment)}`)
  const escrow = new EscrowContract(ethers.getAddress(payment.escrowAddress), consumer, chainId)
  const fundsBefore = await escrow.getUserFunds(await consumer.getAddress(), input.paymentToken)
  const verified = await escrow.verifyFundsForEscrowPayment(
    input.paymentToken,
    env.consumerAddress,
    await unitsToAmount(consumer, input.paymentToken, payment.amount),
    payment.amount.toString(),
    payment.minLockSeconds.toString(),
    '10'
  )
  if (!verified.isValid) throw new Error(`escrow: ${verified.message}`)
  const fundsDeposited = await escrow.getUserFunds(await consumer.getAddress(), input.paymentToken)
  await orderAll(init, assets, algo, env)
  const jobs = await ProviderInstance.computeStart(
    nodeUri, consumer, env.id, assets, algo, computeValidUntil, input.paymentToken, resources, chainId
  )
  if (!jobs) throw new Error('computeStart returned nothing')
  const jobId = jobs[0].jobId
  log(`paid job ${jobId} on ${env.id}`)
  const { job, seen } = await follow(jobId)
  const downloaded = await download(job)
  const fundsAfter = await escrow.getUserFunds(await consumer.getAddress(), input.paymentToken)
  return {
    env: env.id,
    jobId,
    statuses: seen,
    job,
    payment,
    escrowFunds: {
      before: fundsBefore[0].toString(),
      deposited: fundsDeposited[0].toString(),
      after: fundsAfter[0].toString()
    },
    ...downloaded
  }
}

const out = {}
const envs = await ProviderInstance.getComputeEnvironments(nodeUri)
out.environments = envs
for (const flow of input.flows) {
  out[flow] = flow === 'free' ? await freeFlow(envs) : await paidFlow(envs)
}
console.log(JSON.stringify(out))
