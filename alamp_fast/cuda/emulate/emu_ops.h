// The warp collectives' operation codes: the one contract between the device code's header
// (emu.h, which encodes a collective as af_emu_warp_op(op, ...)) and the fiber runtime
// (runtime.cpp, which executes it). Included by both, so the two cannot disagree.
#pragma once

enum WarpOp : int {
    OP_SHFL_IDX = 1,
    OP_SHFL_UP,
    OP_SHFL_DOWN,
    OP_SHFL_XOR,
    OP_BALLOT,
    OP_ANY,
    OP_ALL,
    OP_MATCH_ANY,
    OP_MATCH_ALL,
    OP_SYNCWARP,
    OP_REDUX_ADD,
    OP_REDUX_MIN,
    OP_REDUX_MAX,
    OP_REDUX_UMIN,
    OP_REDUX_UMAX,
    OP_REDUX_AND,
    OP_REDUX_OR,
    OP_REDUX_XOR,
};
