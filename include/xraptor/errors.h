/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The error codes of libxraptor, shared by the library's API (xraptor.h)
 * and by antenna modules (xraptor/antenna.h): 0 is success, every error a
 * negative XR_E* value; xr_strerror() names them.
 */
#ifndef XRAPTOR_ERRORS_H
#define XRAPTOR_ERRORS_H

enum {
    XR_OK = 0,
    XR_ENOMEM = -1,   /* out of memory */
    XR_EINVAL = -2,   /* invalid argument */
    XR_EUSAGE = -3,   /* bad command-line flag or option value */
    XR_ETLS = -4,     /* TLS certificate, key or context error */
    XR_ELISTEN = -5,  /* could not bind or listen */
    XR_ECLOSED = -6,  /* connection is closing or closed */
    XR_ELIMIT = -7,   /* a configured limit was reached */
    XR_ESTATE = -8,   /* called at the wrong time */
    XR_EIO = -9,      /* event loop or socket error */
    XR_EEXIST = -10,  /* already registered */
    XR_EANTENNA = -11, /* the antenna (broker) refused or is down */
    XR_ENOENT = -12,  /* no such member in the JSON object */
    XR_ETYPE = -13,   /* the member has another type (or a number that does not fit) */
    XR_EJSON = -14,   /* the text is not one JSON object */
    XR_EPERM = -15    /* the connection's token does not grant it */
};

#endif /* XRAPTOR_ERRORS_H */
