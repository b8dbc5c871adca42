//! Scan requirements: SARIF reports committed in the repository, judged by level and
//! security severity.
