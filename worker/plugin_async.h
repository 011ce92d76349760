// The taskrt::AsyncTask that a plugin's asynchronous handler receives: a thread-safe
// face of one worker::AsyncCall, which lives on the worker's event loop.
//
// Every method may be called from any thread: those that touch the call (OnCancel,
// After, Finish) post their work to the loop, so the call and its timers are only ever
// touched on the loop thread, like a built-in's.
#ifndef TASKRT_WORKER_PLUGIN_ASYNC_H_
#define TASKRT_WORKER_PLUGIN_ASYNC_H_

#include "taskrt/handler.h"
#include "worker/registry.h"

namespace taskrt::worker {

// Adapts a plugin's handler to the loop-handler form the worker runs.
LoopHandlerFn AdaptPluginAsync(AsyncHandlerFn fn);

}  // namespace taskrt::worker

#endif  // TASKRT_WORKER_PLUGIN_ASYNC_H_
