//! ntari-ntp (in progress)
