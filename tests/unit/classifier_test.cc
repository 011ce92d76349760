#include "daemon/classifier.h"

#include <gtest/gtest.h>

namespace taskrt::daemon {
namespace {

TEST(ClassifierTest, ClientDeclarationWinsOverHintAndLearning) {
  ClassifierOptions opts;
  LearnedStats learned{0.99, 50};
  ClassDecision d = Classify("h", v1::TASK_CLASS_IO, v1::TASK_CLASS_CPU, &learned, opts);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_IO);
  EXPECT_EQ(d.reason, v1::REASON_CLIENT_DECLARED);
  EXPECT_NE(d.evidence.find("IO"), std::string::npos);
}

TEST(ClassifierTest, HintWinsOverLearning) {
  ClassifierOptions opts;
  LearnedStats learned{0.01, 50};
  ClassDecision d = Classify("h", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_CPU, &learned, opts);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_CPU);
  EXPECT_EQ(d.reason, v1::REASON_HANDLER_HINT);
}

TEST(ClassifierTest, LearnedNeedsMinimumSamples) {
  ClassifierOptions opts;
  opts.min_samples = 3;
  opts.default_class = v1::TASK_CLASS_CPU;
  LearnedStats learned;
  Learn(learned, 0, 50'000, opts);
  Learn(learned, 0, 50'000, opts);
  ClassDecision d = Classify("h", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_AUTO, &learned, opts);
  EXPECT_EQ(d.reason, v1::REASON_DEFAULT);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_CPU);
  Learn(learned, 0, 50'000, opts);
  d = Classify("h", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_AUTO, &learned, opts);
  EXPECT_EQ(d.reason, v1::REASON_LEARNED);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_IO);
  EXPECT_NE(d.evidence.find("over 3 runs"), std::string::npos) << d.evidence;
}

TEST(ClassifierTest, LearnsCpuBoundAboveThreshold) {
  ClassifierOptions opts;
  LearnedStats learned;
  for (int i = 0; i < 5; ++i) Learn(learned, 97'000, 100'000, opts);
  EXPECT_NEAR(learned.cpu_ratio, 0.97, 1e-9);
  EXPECT_EQ(LearnedClass(learned, opts), v1::TASK_CLASS_CPU);
  ClassDecision d = Classify("h", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_AUTO, &learned, opts);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_CPU);
  EXPECT_NE(d.evidence.find("cpu/wall 0.97 over 5 runs"), std::string::npos) << d.evidence;
}

TEST(ClassifierTest, SmoothingFollowsAChangeGradually) {
  ClassifierOptions opts;
  opts.smoothing = 0.5;
  LearnedStats learned;
  Learn(learned, 100'000, 100'000, opts);  // 1.0
  Learn(learned, 0, 100'000, opts);        // 0.5
  EXPECT_NEAR(learned.cpu_ratio, 0.5, 1e-9);
  Learn(learned, 0, 100'000, opts);  // 0.25
  EXPECT_NEAR(learned.cpu_ratio, 0.25, 1e-9);
}

TEST(ClassifierTest, IgnoresRunsTooShortToMeasure) {
  ClassifierOptions opts;
  opts.min_wall_us = 1000;
  LearnedStats learned;
  Learn(learned, 10, 999, opts);
  EXPECT_EQ(learned.samples, 0u);
  Learn(learned, 200'000, 100'000, opts);  // ratio clamped to 1
  EXPECT_EQ(learned.samples, 1u);
  EXPECT_DOUBLE_EQ(learned.cpu_ratio, 1.0);
}

TEST(ClassifierTest, DefaultClassIsConfigurable) {
  ClassifierOptions opts;
  opts.default_class = v1::TASK_CLASS_IO;
  ClassDecision d = Classify("h", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_AUTO, nullptr, opts);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_IO);
  EXPECT_EQ(d.reason, v1::REASON_DEFAULT);
}

TEST(ClassifierTest, MismatchHintWhenDeclaredIoButComputed) {
  ClassifierOptions opts;
  v1::Decision d;
  d.set_reason(v1::REASON_CLIENT_DECLARED);
  d.set_resolved_class(v1::TASK_CLASS_IO);
  d.set_run_time_us(500'000);
  d.set_cpu_time_us(490'000);
  const std::string hint = MismatchHint(d, opts);
  EXPECT_NE(hint.find("declared IO but used 98% CPU"), std::string::npos) << hint;
}

TEST(ClassifierTest, MismatchHintWhenDeclaredCpuButWaited) {
  ClassifierOptions opts;
  v1::Decision d;
  d.set_reason(v1::REASON_CLIENT_DECLARED);
  d.set_resolved_class(v1::TASK_CLASS_CPU);
  d.set_run_time_us(500'000);
  d.set_cpu_time_us(1'000);
  EXPECT_NE(MismatchHint(d, opts).find("declared CPU but used 0% CPU"), std::string::npos);
}

TEST(ClassifierTest, NoHintWhenConsistentShortOrLearned) {
  ClassifierOptions opts;
  v1::Decision d;
  d.set_reason(v1::REASON_CLIENT_DECLARED);
  d.set_resolved_class(v1::TASK_CLASS_CPU);
  d.set_run_time_us(500'000);
  d.set_cpu_time_us(480'000);
  EXPECT_EQ(MismatchHint(d, opts), "");
  d.set_cpu_time_us(0);
  d.set_run_time_us(2'000);  // too short to judge
  EXPECT_EQ(MismatchHint(d, opts), "");
  d.set_run_time_us(500'000);
  d.set_reason(v1::REASON_LEARNED);
  EXPECT_EQ(MismatchHint(d, opts), "");
}

// Four CPU-bound Python threads in one process: each computes a quarter of the time and
// waits for the GIL the rest. By cpu/wall they look I/O-bound; with the GIL wait taken
// out of the wall time they are CPU-bound, and the evidence says which ratio it was.
TEST(ClassifierTest, GilWaitIsNotIoWait) {
  ClassifierOptions opts;
  LearnedStats naive, corrected;
  for (int i = 0; i < 5; ++i) {
    Learn(naive, 250'000, 1'000'000, opts);
    Learn(corrected, 250'000, 1'000'000, opts, /*gil_wait_us=*/740'000);
  }
  EXPECT_EQ(LearnedClass(naive, opts), v1::TASK_CLASS_IO);
  EXPECT_EQ(LearnedClass(corrected, opts), v1::TASK_CLASS_CPU);
  EXPECT_GT(corrected.cpu_ratio, 0.9);
  EXPECT_EQ(corrected.gil_samples, 5u);
  ClassDecision d = Classify("mod:fib", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_AUTO, &corrected, opts);
  EXPECT_EQ(d.reason, v1::REASON_LEARNED);
  EXPECT_NE(d.evidence.find("cpu/(wall - GIL wait)"), std::string::npos) << d.evidence;
  EXPECT_NE(d.evidence.find("mod:fib"), std::string::npos) << d.evidence;
  // A sleep measured with the probe stays I/O-bound: no GIL wait, no CPU.
  LearnedStats sleeps;
  for (int i = 0; i < 5; ++i) Learn(sleeps, 1'000, 500'000, opts, /*gil_wait_us=*/0);
  EXPECT_EQ(LearnedClass(sleeps, opts), v1::TASK_CLASS_IO);
}

TEST(ClassifierTest, PythonDeclaredIoThatComputedIsToldAboutTheGil) {
  ClassifierOptions opts;
  v1::Decision d;
  d.set_reason(v1::REASON_CLIENT_DECLARED);
  d.set_resolved_class(v1::TASK_CLASS_IO);
  d.set_runtime("python");
  d.set_run_time_us(1'000'000);
  d.set_cpu_time_us(240'000);
  d.set_gil_wait_us(750'000);
  d.set_gil_measured(true);
  d.set_peers(3);
  d.set_worker_pid(812);
  const std::string hint = MismatchHint(d, opts);
  EXPECT_NE(hint.find("GIL"), std::string::npos) << hint;
  EXPECT_NE(hint.find("submit it as CPU"), std::string::npos) << hint;
  EXPECT_NE(hint.find("3 other Python tasks"), std::string::npos) << hint;
  const std::string evidence = GilEvidence(d);
  EXPECT_NE(evidence.find("held the GIL 24% of its run"), std::string::npos) << evidence;
  EXPECT_NE(evidence.find("waited 0.75 s for it behind 3 other Python tasks on worker pid 812"),
            std::string::npos)
      << evidence;
  // Unmeasured: the evidence says so; a native run has none.
  d.set_gil_measured(false);
  EXPECT_NE(GilEvidence(d).find("not measured"), std::string::npos);
  d.set_runtime("native");
  EXPECT_EQ(GilEvidence(d), "");
}

// A no-op is occasionally slow (its process was preempted): those runs alone must not
// teach that it waits. Too short on average, it keeps the default class.
TEST(ClassifierTest, TasksTooShortOnAverageAreNotLearnedFromOutliers) {
  ClassifierOptions opts;
  LearnedStats noop;
  for (int i = 0; i < 50; ++i) Learn(noop, 5, 20, opts);
  for (int i = 0; i < 3; ++i) Learn(noop, 5, 1500, opts);  // preempted runs, cpu ~0
  EXPECT_EQ(noop.samples, 3u);
  EXPECT_LT(noop.wall_us, 1000);
  EXPECT_EQ(LearnedClass(noop, opts), v1::TASK_CLASS_AUTO);
  ClassDecision d = Classify("m:noop", v1::TASK_CLASS_AUTO, v1::TASK_CLASS_AUTO, &noop, opts);
  EXPECT_EQ(d.reason, v1::REASON_DEFAULT);
  EXPECT_EQ(d.resolved, v1::TASK_CLASS_CPU);
  EXPECT_NE(d.evidence.find("too short to learn"), std::string::npos) << d.evidence;
}

}  // namespace
}  // namespace taskrt::daemon
