//! Isolation forest (Liu, Ting & Zhou 2008) with scikit-learn's conventions: seeded,
//! flat node arrays, no I/O.
