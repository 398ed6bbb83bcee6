/**
 * The identification kernel: scores of one probe against every row of a gallery block, as a
 * WebAssembly function using 128-bit SIMD (four float32 lanes, four accumulators, 16 values per
 * step). It is several times faster than the best scalar JavaScript loop on the same data (see
 * bench/identify.ts). The module is assembled here from its instructions, so there is no build
 * step and no binary in the repository.
 *
 * Float32 arithmetic without fused multiply-add is exactly specified in WebAssembly, so
 * `laneDot` below reproduces the kernel's result bit for bit in JavaScript: single comparisons
 * (verification) and tests score exactly as a search does.
 */

/** Rows must have a multiple of this many values for the kernel; other dimensions use `dotAt`. */
export const kernelStride = 16

const leb = (value: number): Array<number> => {
  const out: Array<number> = []
  let n = value >>> 0
  do {
    let byte = n & 0x7f
    n >>>= 7
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return out
}

const sleb = (value: number): Array<number> => {
  const out: Array<number> = []
  let n = value | 0
  while (true) {
    const byte = n & 0x7f
    n >>= 7
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte)
      return out
    }
    out.push(byte | 0x80)
  }
}

const name = (text: string) => [...leb(text.length), ...Array.from(text, (c) => c.charCodeAt(0))]
const vec = (items: ReadonlyArray<ReadonlyArray<number>>) => [...leb(items.length), ...items.flat()]
const section = (id: number, body: ReadonlyArray<number>) => [id, ...leb(body.length), ...body]

const i32 = 0x7f
const v128 = 0x7b
const get = (local: number) => [0x20, local]
const set = (local: number) => [0x21, local]
const i32Const = (n: number) => [0x41, ...sleb(n)]
const simd = (op: number) => [0xfd, ...leb(op)]
const v128Load = (offset: number) => [...simd(0x00), 4, ...leb(offset)]
const v128Zero = [...simd(0x0c), ...new Array<number>(16).fill(0)]
const f32x4Add = simd(0xe4)
const f32x4Mul = simd(0xe6)
const lane = (i: number) => [...simd(0x1f), i]
const f32Add = [0x92]
const f32Store = [0x38, 2, 0]
const i32Add = [0x6a]
const i32Sub = [0x6b]
const i32Shl = [0x74]
const i32LtU = [0x49]
const i32Eqz = [0x45]
const block = [0x02, 0x40]
const loop = [0x03, 0x40]
const end = [0x0b]
const brIf = (depth: number) => [0x0d, depth]
const br = (depth: number) => [0x0c, depth]

// scores(rowPtr, probePtr, rows, dimension, outPtr): out[r] = probe . row[r], for dimension % 16 == 0.
// Locals: 0 row pointer, 1 probe, 2 rows left, 3 dimension, 4 out pointer, 5 row bytes, 6 row end,
// 7 probe pointer, 8-11 the four accumulators.
const [rowPtr, probePtr, rowsLeft, dimension, outPtr, rowBytes, rowEnd, probeAt] = [0, 1, 2, 3, 4, 5, 6, 7]
const acc = (k: number) => 8 + k

const body = [
  ...vec([[3, i32], [4, v128]]),
  ...get(dimension),
  ...i32Const(2),
  ...i32Shl,
  ...set(rowBytes),
  ...block,
  ...loop,
  ...get(rowsLeft),
  ...i32Eqz,
  ...brIf(1),
  ...[0, 1, 2, 3].flatMap((k) => [...v128Zero, ...set(acc(k))]),
  ...get(rowPtr),
  ...get(rowBytes),
  ...i32Add,
  ...set(rowEnd),
  ...get(probePtr),
  ...set(probeAt),
  ...loop,
  ...[0, 1, 2, 3].flatMap((k) => [
    ...get(acc(k)),
    ...get(rowPtr),
    ...v128Load(16 * k),
    ...get(probeAt),
    ...v128Load(16 * k),
    ...f32x4Mul,
    ...f32x4Add,
    ...set(acc(k))
  ]),
  ...get(rowPtr),
  ...i32Const(64),
  ...i32Add,
  ...set(rowPtr),
  ...get(probeAt),
  ...i32Const(64),
  ...i32Add,
  ...set(probeAt),
  ...get(rowPtr),
  ...get(rowEnd),
  ...i32LtU,
  ...brIf(0),
  ...end,
  // (a0 + a1) + (a2 + a3), then (lane0 + lane1) + (lane2 + lane3)
  ...get(acc(0)),
  ...get(acc(1)),
  ...f32x4Add,
  ...get(acc(2)),
  ...get(acc(3)),
  ...f32x4Add,
  ...f32x4Add,
  ...set(acc(0)),
  ...get(outPtr),
  ...get(acc(0)),
  ...lane(0),
  ...get(acc(0)),
  ...lane(1),
  ...f32Add,
  ...get(acc(0)),
  ...lane(2),
  ...get(acc(0)),
  ...lane(3),
  ...f32Add,
  ...f32Add,
  ...f32Store,
  ...get(outPtr),
  ...i32Const(4),
  ...i32Add,
  ...set(outPtr),
  ...get(rowsLeft),
  ...i32Const(1),
  ...i32Sub,
  ...set(rowsLeft),
  ...br(0),
  ...end,
  ...end,
  ...end
]

const moduleBytes = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  ...section(1, vec([[0x60, ...vec([[i32], [i32], [i32], [i32], [i32]]), 0]])),
  ...section(2, vec([[...name("env"), ...name("memory"), 0x02, 0x00, ...leb(1)]])),
  ...section(3, vec([[0]])),
  ...section(7, vec([[...name("scores"), 0x00, 0]])),
  ...section(10, vec([[...leb(body.length), ...body]]))
])

// The project compiles without the DOM library, which declares WebAssembly; these are the few
// members used here.
export interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
interface WasmApi {
  readonly Module: new(bytes: Uint8Array) => object
  readonly Instance: new(module: object, imports: object) => { readonly exports: Record<string, unknown> }
  readonly Memory: new(descriptor: { readonly initial: number }) => WasmMemory
}
const wasm = (globalThis as { readonly WebAssembly?: WasmApi }).WebAssembly

/** Bytes of one WebAssembly memory page. */
export const pageBytes = 65536

let compiled: object | null | undefined

/** The compiled kernel, or null where WebAssembly SIMD is not available (then galleries use `dotAt`). */
const kernelModule = (): object | null => {
  if (compiled === undefined) {
    try {
      compiled = wasm === undefined ? null : new wasm.Module(moduleBytes)
    } catch {
      compiled = null
    }
  }
  return compiled
}

export type ScoresFunction = (rowPtr: number, probePtr: number, rows: number, dimension: number, outPtr: number) => void

/** A memory of `pages` pages with the kernel over it, or null where the kernel is not available. */
export const allocateKernel = (
  pages: number
): { readonly memory: WasmMemory; readonly scores: ScoresFunction } | null => {
  const module = kernelModule()
  if (module === null || wasm === undefined) return null
  const memory = new wasm.Memory({ initial: pages })
  const instance = new wasm.Instance(module, { env: { memory } })
  return { memory, scores: instance.exports.scores as ScoresFunction }
}

const f = Math.fround

/**
 * The kernel's score of `b` against the row of `a` at `offset`, computed in JavaScript with the
 * same float32 operations in the same order: 16 accumulators (4 vectors of 4 lanes).
 */
export const laneDot = (a: Float32Array, offset: number, b: Float32Array, dim: number): number => {
  const accs = new Float64Array(16)
  for (let i = 0; i < dim; i += 16) {
    for (let k = 0; k < 16; k++) accs[k] = f(accs[k] + f(a[offset + i + k] * b[i + k]))
  }
  const lanes = [0, 1, 2, 3].map((l) => f(f(accs[l] + accs[4 + l]) + f(accs[8 + l] + accs[12 + l])))
  return f(f(lanes[0] + lanes[1]) + f(lanes[2] + lanes[3]))
}
