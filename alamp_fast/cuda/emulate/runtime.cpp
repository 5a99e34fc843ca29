// Fiber runtime of the CUDA emulator: blocks run one after another; the threads of a block run
// as fibers on one OS thread, switched at every barrier and warp collective.
//
// Scheduling: within a block, each warp's runnable lanes run until each blocks (a barrier, a
// collective, exit); then the warp's collectives are executed for every group of lanes whose
// masks agree, and the lanes run on; once no lane of any warp can move, every live thread must
// be at the same __syncthreads, which is then released. Anything else is an error, reported with
// the kernel name, block and thread: a barrier some thread skips or reaches on another line, a
// collective whose mask names a lane that is not executing it, a read from a lane outside the
// mask, a deadlock.
//
// Checking build (AF_EMU_CHECK): the kernel code is compiled with -fsanitize=thread's
// instrumentation only, and this file provides the __tsan_* hooks, so every load and store of
// device code arrives here: accesses outside the kernel's arguments (and shared memory, stacks)
// are out-of-bounds errors, and two threads of a block touching the same byte between two
// barriers, one of them writing, non-atomically, is a data race. Misaligned accesses (e.g. a
// vector load from an address that is not a multiple of its size) arrive through
// -fsanitize=alignment's handler in every build.
//
// This file is compiled without instrumentation.

#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu_ops.h"

#define AF_EXPORT extern "C" __attribute__((visibility("default")))

namespace af_emu {
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
};
struct ThreadInfo {
    uint3 tid;
    unsigned lane;
};
}  // namespace af_emu
using namespace af_emu;

extern "C" {
ThreadInfo* af_emu_cur = nullptr;
uint3 af_emu_block_idx = {0, 0, 0};
dim3 af_emu_block_dim = {1, 1, 1};
dim3 af_emu_grid_dim = {1, 1, 1};
}


// ---------------------------------------------------------------------------------------------
// context switch

#if defined(__x86_64__) && !defined(AF_EMU_UCONTEXT)
extern "C" void af_emu_switch(void** save_sp, void* to_sp);
asm(R"(
    .text
    .p2align 4
    .type af_emu_switch,@function
af_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size af_emu_switch, .-af_emu_switch
)");
struct Context {
    void* sp = nullptr;
};
static Context g_sched;
static inline void ctx_switch(Context* from, Context* to) { af_emu_switch(&from->sp, to->sp); }
static void ctx_init(Context* c, char* stack, size_t size, void (*entry)()) {
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    // the floating-point control words are not switched: device code never changes them
    uint64_t* sp = (uint64_t*)(top - 72);  // = 8 (mod 16): `ret` leaves rsp as after a call
    sp[0] = 0;                             // alignment slot
    for (int i = 1; i <= 6; ++i) sp[i] = 0;  // r15 r14 r13 r12 rbx rbp
    sp[7] = (uint64_t)entry;
    sp[8] = 0;  // the entry's return address: it never returns
    c->sp = sp;
}
#else
#include <ucontext.h>
struct Context {
    ucontext_t uc;
};
static Context g_sched;
static inline void ctx_switch(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
static void ctx_init(Context* c, char* stack, size_t size, void (*entry)()) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
}
#endif

// ---------------------------------------------------------------------------------------------
// state

enum State : int { RUN, AT_BARRIER, AT_WARP, DONE };

static const char* OP_NAMES[] = {"?",
                                 "__shfl_sync",
                                 "__shfl_up_sync",
                                 "__shfl_down_sync",
                                 "__shfl_xor_sync",
                                 "__ballot_sync",
                                 "__any_sync",
                                 "__all_sync",
                                 "__match_any_sync",
                                 "__match_all_sync",
                                 "__syncwarp",
                                 "__reduce_add_sync",
                                 "__reduce_min_sync",
                                 "__reduce_max_sync",
                                 "__reduce_min_sync",
                                 "__reduce_max_sync",
                                 "__reduce_and_sync",
                                 "__reduce_or_sync",
                                 "__reduce_xor_sync"};
static const char* BAR_NAMES[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                  "__syncthreads_or"};

struct Thread {
    ThreadInfo info;
    Context ctx;
    int linear;
    int state;
    // barrier
    int bar_kind, bar_pred, bar_line;
    // warp collective
    int op, size, arg, width, line;
    unsigned mask;
    unsigned long long bits, result;
    unsigned wgen_seen;  // race checker: warp syncs this thread has passed
};

typedef void (*Invoke)(void* fn, void** args);

struct LaunchDesc {  // mirrored by ctypes in _build.py
    unsigned grid[3];
    unsigned block[3];
    unsigned long long shared_bytes;
    const char* name;
    int n_regions;
    const unsigned long long* regions;  // [lo, hi) byte ranges of the pointer arguments
    const char* const* region_names;
    int check;  // race and bounds checking (checking build only)
    char* err;
    int err_len;
};

static const LaunchDesc* g_launch = nullptr;
static std::vector<Thread> g_threads;
static int g_nthreads = 0, g_nwarps = 0;
static Invoke g_invoke = nullptr;
static void* g_fn = nullptr;
static void** g_args = nullptr;
static std::string g_error;
static bool g_in_kernel = false;
static std::vector<unsigned char> g_dyn_smem;
static size_t g_dyn_smem_size = 0;
static unsigned g_epoch = 0;
static std::vector<unsigned> g_wgen;

// stacks: one mapping, a guard page under each stack
// fiber stacks: one mapping, a guard page under each stack; the size (KiB) from
// $ALAMP_FAST_EMULATE_STACK_KB, default AF_EMU_STACK_KB
static size_t STACK_SIZE = 0;
static const size_t PAGE = 4096;
static char* g_stacks = nullptr;
static size_t g_stack_slots = 0;
static uintptr_t g_stack_lo = 0, g_stack_hi = 0;
static const size_t MAX_THREADS = 1024;

static std::string where(const Thread* t);
static struct sigaction g_prev_segv;

// a fault in a guard page is a fiber's stack overflow: say which kernel, block and thread
static void on_segv(int sig, siginfo_t* info, void*) {
    const uintptr_t a = (uintptr_t)info->si_addr;
    if (g_in_kernel && a >= g_stack_lo && a < g_stack_hi &&
        (a - g_stack_lo) % (STACK_SIZE + PAGE) < PAGE) {
        char buf[512];
        const int n = std::snprintf(
            buf, sizeof buf,
            "alamp_fast CUDA emulator: stack overflow in kernel %s, %s (fiber stacks are %zu KiB; "
            "set ALAMP_FAST_EMULATE_STACK_KB)\n",
            g_launch ? g_launch->name : "?", af_emu_cur ? where((Thread*)af_emu_cur).c_str() : "?",
            STACK_SIZE >> 10);
        if (n > 0) (void)!write(2, buf, (size_t)n);
    }
    // hand the fault to whoever handled it before (Python's faulthandler): returning re-runs
    // the faulting instruction under that handler
    sigaction(sig, &g_prev_segv, nullptr);
}

static bool ensure_stacks(int n) {
    if ((size_t)n <= g_stack_slots) return true;
    if (!STACK_SIZE) {
        const char* env = std::getenv("ALAMP_FAST_EMULATE_STACK_KB");
        long kb = env ? std::strtol(env, nullptr, 10) : 0;
        if (kb < 16) kb = AF_EMU_STACK_KB;
        STACK_SIZE = (((size_t)kb << 10) + PAGE - 1) / PAGE * PAGE;
#if !defined(AF_EMU_ASAN)
        // the handler runs on its own stack (the faulting one is full)
        static char altstack[64 << 10];
        stack_t ss = {};
        ss.ss_sp = altstack;
        ss.ss_size = sizeof altstack;
        if (sigaction(SIGSEGV, nullptr, &g_prev_segv) == 0 && sigaltstack(&ss, nullptr) == 0) {
            struct sigaction sa = {};
            sa.sa_sigaction = on_segv;
            sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGSEGV, &sa, nullptr);
        }
#endif
    }
    const size_t slot = STACK_SIZE + PAGE;
    void* p = mmap(nullptr, slot * MAX_THREADS, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    for (size_t i = 0; i < MAX_THREADS; ++i) mprotect((char*)p + i * slot, PAGE, PROT_NONE);
    g_stacks = (char*)p;
    g_stack_slots = MAX_THREADS;
    g_stack_lo = (uintptr_t)p;
    g_stack_hi = (uintptr_t)p + slot * MAX_THREADS;
    return true;
}
static char* stack_of(int i) { return g_stacks + (size_t)i * (STACK_SIZE + PAGE) + PAGE; }

// ---------------------------------------------------------------------------------------------
// errors

static std::string thread_str(const Thread* t) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "thread (%u, %u, %u)", t->info.tid.x, t->info.tid.y,
                  t->info.tid.z);
    return buf;
}
static std::string where(const Thread* t) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "block (%u, %u, %u), ", af_emu_block_idx.x, af_emu_block_idx.y,
                  af_emu_block_idx.z);
    return buf + thread_str(t);
}

static void set_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char* fmt, ...) {
    if (!g_error.empty()) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_error = std::string("kernel ") + (g_launch && g_launch->name ? g_launch->name : "?") + ": " +
              buf;
}

// from a fiber: record the error and never come back
[[noreturn]] static void fiber_abort() {
    Thread* t = (Thread*)af_emu_cur;
    t->state = DONE;
    ctx_switch(&t->ctx, &g_sched);
    __builtin_trap();
}

extern "C" [[noreturn]] void af_emu_trap(const char* what, int line) {
    Thread* t = (Thread*)af_emu_cur;
    set_error("%s at line %d in %s", what, line, where(t).c_str());
    fiber_abort();
}

// ---------------------------------------------------------------------------------------------
// device API

static inline Thread* cur() { return (Thread*)af_emu_cur; }

extern "C" void* af_emu_dynamic_smem() { return g_dyn_smem.data(); }

// static __shared__ variables (registered once, on first execution of their declaration)
struct SharedVar {
    uintptr_t p;
    size_t n;
    const char* name;
};
static std::vector<SharedVar> g_shared_vars;
static const unsigned char GARBAGE = 0xA5;  // what a block finds in shared memory it did not write

extern "C" bool af_emu_shared_var(const void* p, unsigned long size, const char* name) {
    for (const auto& v : g_shared_vars)
        if (v.p == (uintptr_t)p) return true;
    g_shared_vars.push_back({(uintptr_t)p, size, name});
    std::memset(const_cast<void*>(p), GARBAGE, size);
    return true;
}

static std::string shared_var_at(uintptr_t a) {
    for (const auto& v : g_shared_vars)
        if (a >= v.p && a < v.p + v.n)
            return std::string("__shared__ ") + v.name + ", byte " + std::to_string(a - v.p);
    return "";
}

extern "C" unsigned af_emu_activemask() {
    // lanes of this warp that have not exited (the emulator keeps a warp converged)
    Thread* t = cur();
    const int w0 = (t->linear / 32) * 32;
    unsigned m = 0;
    for (int i = w0; i < w0 + 32 && i < g_nthreads; ++i)
        if (g_threads[i].state != DONE) m |= 1u << (i - w0);
    return m;
}

extern "C" int af_emu_barrier(int kind, int pred, int line) {
    Thread* t = cur();
    t->state = AT_BARRIER;
    t->bar_kind = kind;
    t->bar_pred = pred;
    t->bar_line = line;
    ctx_switch(&t->ctx, &g_sched);
    return (int)t->result;
}

extern "C" unsigned long long af_emu_warp_op(int op, unsigned mask, unsigned long long bits,
                                             int size, int arg, int width, int line) {
    Thread* t = cur();
    t->state = AT_WARP;
    t->op = op;
    t->mask = mask;
    t->bits = bits;
    t->size = size;
    t->arg = arg;
    t->width = width;
    t->line = line;
    ctx_switch(&t->ctx, &g_sched);
    return t->result;
}

static void fiber_entry() {
    Thread* t = cur();
    g_invoke(g_fn, g_args);
    t->state = DONE;
    ctx_switch(&t->ctx, &g_sched);
    __builtin_trap();
}

// ---------------------------------------------------------------------------------------------
// warp collectives

static std::string state_of(const Thread& u) {
    char buf[160];
    switch (u.state) {
        case DONE:
            return "has exited";
        case AT_BARRIER:
            std::snprintf(buf, sizeof buf, "waits at %s (line %d)", BAR_NAMES[u.bar_kind],
                          u.bar_line);
            return buf;
        case AT_WARP:
            std::snprintf(buf, sizeof buf, "is in %s with mask 0x%08x (line %d)", OP_NAMES[u.op],
                          u.mask, u.line);
            return buf;
        default:
            return "is running";
    }
}

// 1: executed a group, 0: nothing waiting, -1: error
static int resolve_warp(int w) {
    const int base = w * 32;
    const int nlanes = std::min(32, g_nthreads - base);
    int first = -1;
    for (int l = 0; l < nlanes; ++l)
        if (g_threads[base + l].state == AT_WARP) {
            first = l;
            break;
        }
    if (first < 0) return 0;
    Thread& a = g_threads[base + first];
    const unsigned mask = a.mask;
    if (!(mask >> first & 1u)) {
        set_error("%s (line %d) with mask 0x%08x, which does not contain the calling lane %d, in %s",
                  OP_NAMES[a.op], a.line, mask, first, where(&a).c_str());
        return -1;
    }
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (l >= nlanes) {
            set_error("%s (line %d) with mask 0x%08x in %s: lane %d does not exist (the block "
                      "has %d threads)",
                      OP_NAMES[a.op], a.line, mask, where(&a).c_str(), l, g_nthreads);
            return -1;
        }
        const Thread& u = g_threads[base + l];
        const bool same = u.state == AT_WARP && u.op == a.op && u.mask == mask &&
                          (a.op == OP_SYNCWARP || (u.line == a.line && u.width == a.width));
        if (!same) {
            set_error("warp collective mask mismatch: %s (line %d) with mask 0x%08x in %s, but "
                      "lane %d of the mask %s",
                      OP_NAMES[a.op], a.line, mask, where(&a).c_str(), l, state_of(u).c_str());
            return -1;
        }
    }
    // execute
    const int width = a.width;
    if (a.op >= OP_SHFL_IDX && a.op <= OP_SHFL_XOR &&
        (width < 1 || width > 32 || (width & (width - 1)))) {
        set_error("%s (line %d) with width %d (must be a power of two <= 32) in %s",
                  OP_NAMES[a.op], a.line, width, where(&a).c_str());
        return -1;
    }
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l)
        if (mask >> l & 1u && g_threads[base + l].bits) ballot |= 1u << l;
    const unsigned long long vmask =
        a.size >= 8 ? ~0ull : ((1ull << (8 * (a.size > 0 ? a.size : 4))) - 1ull);
    for (int l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Thread& u = g_threads[base + l];
        unsigned long long r = 0;
        const int seg = l & ~(width - 1);
        int src = l;
        switch (a.op) {
            case OP_SHFL_IDX:
                src = seg + (u.arg & (width - 1));
                break;
            case OP_SHFL_UP:
                src = l - u.arg;
                if (src < seg) src = l;
                break;
            case OP_SHFL_DOWN:
                src = l + u.arg;
                if (src >= seg + width) src = l;
                break;
            case OP_SHFL_XOR:
                src = l ^ u.arg;
                if (src >= seg + width || src < 0 || src > 31) src = l;
                break;
            default:
                break;
        }
        switch (a.op) {
            case OP_SHFL_IDX:
            case OP_SHFL_UP:
            case OP_SHFL_DOWN:
            case OP_SHFL_XOR:
                if (!(mask >> src & 1u)) {
                    set_error("%s (line %d) with mask 0x%08x in %s reads lane %d, which is not in "
                              "the mask (its value is undefined)",
                              OP_NAMES[a.op], a.line, mask, where(&u).c_str(), src);
                    return -1;
                }
                r = g_threads[base + src].bits;
                break;
            case OP_BALLOT:
                r = ballot;
                break;
            case OP_ANY:
                r = ballot != 0;
                break;
            case OP_ALL:
                r = ballot == mask;
                break;
            case OP_MATCH_ANY:
                for (int k = 0; k < 32; ++k)
                    if (mask >> k & 1u &&
                        ((g_threads[base + k].bits ^ u.bits) & vmask) == 0)
                        r |= 1ull << k;
                break;
            case OP_MATCH_ALL: {
                r = mask;
                for (int k = 0; k < 32; ++k)
                    if (mask >> k & 1u && ((g_threads[base + k].bits ^ u.bits) & vmask) != 0)
                        r = 0;
                break;
            }
            case OP_SYNCWARP:
                break;
            default: {  // __reduce_*_sync on 32-bit values
                unsigned long long acc = 0;
                bool firstv = true;
                for (int k = 0; k < 32; ++k) {
                    if (!(mask >> k & 1u)) continue;
                    const unsigned v = (unsigned)g_threads[base + k].bits;
                    if (firstv) {
                        acc = v;
                        firstv = false;
                        continue;
                    }
                    switch (a.op) {
                        case OP_REDUX_ADD: acc = (unsigned)(acc + v); break;
                        case OP_REDUX_MIN: acc = (unsigned)((int)v < (int)acc ? v : acc); break;
                        case OP_REDUX_MAX: acc = (unsigned)((int)v > (int)acc ? v : acc); break;
                        case OP_REDUX_UMIN: acc = v < acc ? v : acc; break;
                        case OP_REDUX_UMAX: acc = v > acc ? v : acc; break;
                        case OP_REDUX_AND: acc &= v; break;
                        case OP_REDUX_OR: acc |= v; break;
                        case OP_REDUX_XOR: acc ^= v; break;
                    }
                }
                r = acc;
            }
        }
        u.result = r;
    }
    // every *_sync collective synchronises its lanes: earlier accesses of the lanes of the mask
    // are ordered before later ones (the race checker's warp generation)
    ++g_wgen[w];
    for (int l = 0; l < 32; ++l)
        if (mask >> l & 1u) g_threads[base + l].state = RUN;
    return 1;
}

// ---------------------------------------------------------------------------------------------
// race and bounds checking (checking build)

#if defined(AF_EMU_CHECK)
struct Shadow {
    int w_tid = -1, r_tid = -1;
    unsigned w_epoch = 0, r_epoch = 0, w_wgen = 0, r_wgen = 0;
    bool w_atomic = false, r_multi = false;
};
static std::unordered_map<uintptr_t, Shadow> g_shadow;
static std::vector<std::pair<uintptr_t, uintptr_t>> g_image;  // this library's segments

static int collect_segments(struct dl_phdr_info* info, size_t, void* data) {
    const uintptr_t self = (uintptr_t)data;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
        if (self >= lo && self < hi) {
            for (int j = 0; j < info->dlpi_phnum; ++j) {
                const auto& q = info->dlpi_phdr[j];
                if (q.p_type == PT_LOAD)
                    g_image.emplace_back(info->dlpi_addr + q.p_vaddr,
                                         info->dlpi_addr + q.p_vaddr + q.p_memsz);
            }
            return 1;
        }
    }
    return 0;
}

static const char* KINDS[] = {"read", "write"};

static std::string describe_address(uintptr_t a) {
    // the nearest argument buffer, to say how far out the access went
    char buf[256] = "";
    long long best = -1;
    for (int i = 0; i < g_launch->n_regions; ++i) {
        const uintptr_t lo = g_launch->regions[2 * i], hi = g_launch->regions[2 * i + 1];
        long long d;
        const char* rel;
        if (a >= hi) {
            d = (long long)(a - hi);
            rel = "past the end of";
        } else if (a < lo) {
            d = (long long)(lo - a);
            rel = "before";
        } else {
            continue;
        }
        if (best < 0 || d < best) {
            best = d;
            std::snprintf(buf, sizeof buf, " (%lld bytes %s %s, %llu bytes)", d, rel,
                          g_launch->region_names[i], (unsigned long long)(hi - lo));
        }
    }
    return buf;
}

static void check_access(const void* p, int size, int write, bool atomic) {
    if (!g_in_kernel || !g_launch->check) return;
    const uintptr_t a = (uintptr_t)p;
    if (a >= g_stack_lo && a < g_stack_hi) return;  // a fiber's own stack
    bool known = false;
    for (int i = 0; i < g_launch->n_regions && !known; ++i)
        known = a >= g_launch->regions[2 * i] && a + size <= g_launch->regions[2 * i + 1];
    const uintptr_t s0 = (uintptr_t)g_dyn_smem.data();
    if (!known && g_dyn_smem_size) {
        if (a >= s0 && a + size <= s0 + g_dyn_smem_size)
            known = true;
        else if (a + size > s0 && a < s0 + g_dyn_smem.size()) {
            set_error("out-of-bounds %s of %d bytes at dynamic shared memory offset %lld (the "
                      "launch gave %zu bytes) in %s",
                      KINDS[write], size, (long long)(a - s0), g_dyn_smem_size,
                      where(cur()).c_str());
            fiber_abort();
        }
    }
    for (size_t i = 0; i < g_image.size() && !known; ++i)
        known = a >= g_image[i].first && a + size <= g_image[i].second;
    if (!known) {
        set_error("out-of-bounds %s of %d bytes at address 0x%" PRIxPTR "%s in %s", KINDS[write],
                  size, a, describe_address(a).c_str(), where(cur()).c_str());
        fiber_abort();
    }
    Thread* t = cur();
    const int tid = t->linear, warp = tid / 32;
    for (int i = 0; i < size; ++i) {
        Shadow& s = g_shadow[a + i];
        // an earlier access by another thread conflicts unless a barrier (epoch) or, within a
        // warp, a __syncwarp passed since, or both are atomic
        auto ordered = [&](int other, unsigned epoch, unsigned wgen) {
            return epoch != g_epoch || (other / 32 == warp && wgen != g_wgen[warp]);
        };
        const char* what = nullptr;
        int other = -1;
        if (s.w_tid >= 0 && s.w_tid != tid && !ordered(s.w_tid, s.w_epoch, s.w_wgen) &&
            !(atomic && s.w_atomic)) {
            what = write ? "write after write" : "read after write";
            other = s.w_tid;
        } else if (write && s.r_tid >= 0 && !ordered(s.r_tid, s.r_epoch, s.r_wgen) &&
                   (s.r_tid != tid || s.r_multi)) {
            what = "write after read";
            other = s.r_tid != tid ? s.r_tid : -2;
        }
        if (what) {
            const std::string o = other >= 0 ? thread_str(&g_threads[other]) : "other threads";
            const uintptr_t s0b = (uintptr_t)g_dyn_smem.data();
            std::string mem = "global memory";
            if (a >= s0b && a < s0b + g_dyn_smem.size())
                mem = "dynamic shared memory, offset " + std::to_string(a + i - s0b);
            for (const auto& seg : g_image)
                if (a >= seg.first && a < seg.second) mem = "a __shared__ variable";
            if (!shared_var_at(a + i).empty()) mem = shared_var_at(a + i);
            for (int r = 0; r < g_launch->n_regions; ++r)
                if (a >= g_launch->regions[2 * r] && a < g_launch->regions[2 * r + 1])
                    mem = std::string(g_launch->region_names[r]) + ", byte " +
                          std::to_string(a + i - g_launch->regions[2 * r]);
            set_error("data race (%s) on %s at 0x%" PRIxPTR " between %s and %s with no "
                      "barrier in between, in block (%u, %u, %u)",
                      what, mem.c_str(), a + i, o.c_str(), thread_str(t).c_str(),
                      af_emu_block_idx.x, af_emu_block_idx.y, af_emu_block_idx.z);
            fiber_abort();
        }
        if (write) {
            s.w_tid = tid;
            s.w_epoch = g_epoch;
            s.w_wgen = g_wgen[warp];
            s.w_atomic = atomic;
        } else if (!atomic) {  // plain reads only: atomics do not race with atomics
            if (s.r_tid >= 0 && s.r_tid != tid && s.r_epoch == g_epoch)
                s.r_multi = true;
            else if (s.r_epoch != g_epoch)
                s.r_multi = false;
            s.r_tid = tid;
            s.r_epoch = g_epoch;
            s.r_wgen = g_wgen[warp];
        }
    }
}

extern "C" void af_emu_note_atomic(const void* p, int size) {
    // atomics read-modify-write: recorded as atomic writes
    check_access(p, size, 1, true);
}

#define AF_TSAN_RW(n)                                                                             \
    AF_EXPORT void __tsan_read##n(void* p) { check_access(p, n, 0, false); }                      \
    AF_EXPORT void __tsan_write##n(void* p) { check_access(p, n, 1, false); }                     \
    AF_EXPORT void __tsan_unaligned_read##n(void* p) { check_access(p, n, 0, false); }            \
    AF_EXPORT void __tsan_unaligned_write##n(void* p) { check_access(p, n, 1, false); }           \
    AF_EXPORT void __tsan_volatile_read##n(void* p) { check_access(p, n, 0, false); }             \
    AF_EXPORT void __tsan_volatile_write##n(void* p) { check_access(p, n, 1, false); }
AF_TSAN_RW(1)
AF_TSAN_RW(2)
AF_TSAN_RW(4)
AF_TSAN_RW(8)
AF_TSAN_RW(16)
AF_EXPORT void __tsan_read_range(void* p, unsigned long n) {
    if (n) check_access(p, (int)n, 0, false);
}
AF_EXPORT void __tsan_write_range(void* p, unsigned long n) {
    if (n) check_access(p, (int)n, 1, false);
}
// atomics of instrumented code (std::atomic_ref's members instantiated there): performed here,
// recorded as atomic accesses
#define AF_TSAN_ATOMIC(n, T)                                                                      \
    AF_EXPORT T __tsan_atomic##n##_load(const volatile T* a, int) {                               \
        check_access((const void*)a, sizeof(T), 0, true);                                         \
        return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                              \
    }                                                                                             \
    AF_EXPORT void __tsan_atomic##n##_store(volatile T* a, T v, int) {                            \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                 \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_exchange(volatile T* a, T v, int) {                            \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                       \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_fetch_add(volatile T* a, T v, int) {                           \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_fetch_sub(volatile T* a, T v, int) {                           \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_fetch_and(volatile T* a, T v, int) {                           \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_fetch_or(volatile T* a, T v, int) {                            \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                         \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_fetch_xor(volatile T* a, T v, int) {                           \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                        \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_fetch_nand(volatile T* a, T v, int) {                          \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                       \
    }                                                                                             \
    AF_EXPORT int __tsan_atomic##n##_compare_exchange_strong(volatile T* a, T* c, T v, int,      \
                                                             int) {                               \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
    }                                                                                             \
    AF_EXPORT int __tsan_atomic##n##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) { \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);   \
    }                                                                                             \
    AF_EXPORT T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T c, T v, int, int) {     \
        check_access((const void*)a, sizeof(T), 1, true);                                         \
        __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);         \
        return c;                                                                                 \
    }
AF_TSAN_ATOMIC(8, char)
AF_TSAN_ATOMIC(16, short)
AF_TSAN_ATOMIC(32, int)
AF_TSAN_ATOMIC(64, long)
#undef AF_TSAN_ATOMIC
AF_EXPORT void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
AF_EXPORT void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
AF_EXPORT void __tsan_func_entry(void*) {}
AF_EXPORT void __tsan_func_exit() {}
AF_EXPORT void __tsan_init() {}
AF_EXPORT void __tsan_vptr_update(void**, void*) {}
AF_EXPORT void __tsan_vptr_read(void**) {}
#else
extern "C" void af_emu_note_atomic(const void*, int) {}
#endif

// misaligned (or null) accesses from -fsanitize=alignment,null, in every build. Hidden: the
// kernels of this library bind to these even where the real UBSan runtime is loaded (the ASan
// build), so the error names kernel, block and thread and raises instead of aborting.
#define AF_HIDDEN extern "C" __attribute__((visibility("hidden")))
struct UbsanLoc {
    const char* file;
    unsigned line, column;
};
struct UbsanType {
    unsigned short kind, info;
    char name[1];
};
struct UbsanMismatch {
    UbsanLoc loc;
    const UbsanType* type;
    unsigned char log_alignment;
    unsigned char check_kind;
};
static const char* UB_KINDS[] = {"load of",        "store to",         "reference binding to",
                                 "member access within", "member call on", "constructor call on",
                                 "downcast of",    "downcast of",      "upcast of",
                                 "cast to virtual base of", "_Nonnull binding to",
                                 "dynamic operation on"};

AF_HIDDEN void __ubsan_handle_type_mismatch_v1(UbsanMismatch* d, uintptr_t ptr) {
    const unsigned long align = 1ul << d->log_alignment;
    const char* kind = d->check_kind < sizeof UB_KINDS / sizeof *UB_KINDS
                           ? UB_KINDS[d->check_kind]
                           : "access to";
    const char* type = d->type ? d->type->name : "?";
    char msg[512];
    if (!ptr)
        std::snprintf(msg, sizeof msg, "%s null pointer of type %s at line %u", kind, type,
                      d->loc.line);
    else
        std::snprintf(msg, sizeof msg,
                      "misaligned %s address 0x%" PRIxPTR " of type %s, which needs %lu-byte "
                      "alignment (a misaligned vector access faults on the GPU), at line %u",
                      kind, ptr, type, align, d->loc.line);
    if (!g_in_kernel) {
        std::fprintf(stderr, "alamp_fast emulator: %s\n", msg);
        std::abort();
    }
    set_error("%s, in %s", msg, where(cur()).c_str());
    fiber_abort();
}
AF_HIDDEN void __ubsan_handle_type_mismatch_v1_abort(UbsanMismatch* d, uintptr_t ptr) {
    __ubsan_handle_type_mismatch_v1(d, ptr);
}

// ---------------------------------------------------------------------------------------------
// the scheduler

static int run_block() {
    const int n = g_nthreads;
    for (int i = 0; i < n; ++i) {
        Thread& t = g_threads[i];
        t.state = RUN;
        t.result = 0;
        ctx_init(&t.ctx, stack_of(i), STACK_SIZE, fiber_entry);
    }
    for (auto& g : g_wgen) g = 0;
    for (const auto& v : g_shared_vars) std::memset((void*)v.p, GARBAGE, v.n);
#if defined(AF_EMU_CHECK)
    g_shadow.clear();
#endif
    while (true) {
        for (int w = 0; w < g_nwarps; ++w) {
            const int lo = w * 32, hi = std::min(n, lo + 32);
            while (true) {
                for (int i = lo; i < hi; ++i) {
                    Thread& t = g_threads[i];
                    if (t.state != RUN) continue;
                    af_emu_cur = &t.info;
                    ctx_switch(&g_sched, &t.ctx);
                    if (!g_error.empty()) return -1;
                }
                const int r = resolve_warp(w);
                if (r < 0) return -1;
                if (r == 0) break;
            }
        }
        // no thread can move: all at one barrier, or all done
        int done = 0, at_bar = -1;
        for (int i = 0; i < n; ++i) {
            if (g_threads[i].state == DONE)
                ++done;
            else if (at_bar < 0)
                at_bar = i;
        }
        if (done == n) return 0;
        const Thread& a = g_threads[at_bar];
        for (int i = 0; i < n; ++i) {
            const Thread& u = g_threads[i];
            if (u.state == AT_BARRIER && u.bar_line == a.bar_line && u.bar_kind == a.bar_kind)
                continue;
            set_error("divergent barrier: %s (line %d) is not reached by every thread of the "
                      "block: %s waits there, but %s %s",
                      BAR_NAMES[a.bar_kind], a.bar_line, where(&a).c_str(), where(&u).c_str(),
                      state_of(u).c_str());
            return -1;
        }
        int count = 0;
        for (int i = 0; i < n; ++i) count += g_threads[i].bar_pred;
        const int res = a.bar_kind == 1 ? count : a.bar_kind == 2 ? count == n : count > 0;
        for (int i = 0; i < n; ++i) {
            g_threads[i].result = (unsigned long long)res;
            g_threads[i].state = RUN;
        }
        ++g_epoch;
    }
}

#if defined(AF_EMU_ASAN)
// ASan/UBSan reports stop the process: say which kernel, block and thread was running
extern "C" void __sanitizer_set_death_callback(void (*callback)(void));
static void on_sanitizer_death() {
    if (!g_in_kernel || !g_launch || !af_emu_cur) return;
    std::fprintf(stderr, "alamp_fast CUDA emulator: the report above is from kernel %s, %s\n",
                 g_launch->name, where(cur()).c_str());
}
#endif

AF_EXPORT int af_emu_launch(const LaunchDesc* L, Invoke invoke, void* fn, void** args) {
#if defined(AF_EMU_ASAN)
    static bool hooked = false;
    if (!hooked) {
        __sanitizer_set_death_callback(on_sanitizer_death);
        hooked = true;
    }
#endif
    g_error.clear();
    g_launch = L;
    const unsigned long long nthreads =
        (unsigned long long)L->block[0] * L->block[1] * L->block[2];
    auto fail = [&](const std::string& msg) {
        std::snprintf(L->err, L->err_len, "kernel %s: %s", L->name, msg.c_str());
        g_launch = nullptr;
        return 1;
    };
    if (nthreads == 0 || nthreads > 1024)
        return fail("invalid launch: " + std::to_string(nthreads) +
                    " threads per block (1 to 1024 allowed)");
    if (L->block[2] > 64) return fail("invalid launch: blockDim.z > 64");
    if (L->grid[0] == 0 || L->grid[1] == 0 || L->grid[2] == 0 || L->grid[0] > 0x7fffffffu ||
        L->grid[1] > 65535u || L->grid[2] > 65535u)
        return fail("invalid launch: grid (" + std::to_string(L->grid[0]) + ", " +
                    std::to_string(L->grid[1]) + ", " + std::to_string(L->grid[2]) + ")");
    if (L->shared_bytes > 48 * 1024)
        return fail("invalid launch: " + std::to_string(L->shared_bytes) +
                    " bytes of dynamic shared memory (48 KiB without an opt-in attribute)");
    if (!ensure_stacks((int)nthreads)) return fail("could not map fiber stacks");
#if defined(AF_EMU_CHECK)
    if (g_image.empty()) dl_iterate_phdr(collect_segments, (void*)&af_emu_launch);
#endif
    g_nthreads = (int)nthreads;
    g_nwarps = (g_nthreads + 31) / 32;
    g_threads.assign(g_nthreads, Thread{});
    g_wgen.assign(g_nwarps, 0);
    for (int i = 0; i < g_nthreads; ++i) {
        Thread& t = g_threads[i];
        t.linear = i;
        t.info.tid = {(unsigned)i % L->block[0], (unsigned)(i / L->block[0]) % L->block[1],
                      (unsigned)(i / (L->block[0] * L->block[1]))};
        t.info.lane = (unsigned)(i % 32);
    }
    g_dyn_smem_size = L->shared_bytes;
    // dynamic shared memory: 16-byte aligned, with slack the bounds check recognises
    g_dyn_smem.assign(((L->shared_bytes + 15) / 16) * 16 + 256, GARBAGE);
    af_emu_grid_dim = {L->grid[0], L->grid[1], L->grid[2]};
    af_emu_block_dim = {L->block[0], L->block[1], L->block[2]};
    g_invoke = invoke;
    g_fn = fn;
    g_args = args;
    g_in_kernel = true;
    int rc = 0;
    for (unsigned z = 0; z < L->grid[2] && !rc; ++z)
        for (unsigned y = 0; y < L->grid[1] && !rc; ++y)
            for (unsigned x = 0; x < L->grid[0] && !rc; ++x) {
                af_emu_block_idx = {x, y, z};
                rc = run_block();
            }
    g_in_kernel = false;
    af_emu_cur = nullptr;
    if (rc) std::snprintf(L->err, L->err_len, "%s", g_error.c_str());
    g_launch = nullptr;
    return rc;
}
