/* test_image_user.c: the job user of an image — Docker USER forms resolved against the image's
 * /etc/passwd and /etc/group across layers (top first, whiteouts honoured). */
#include "executor/runtime_image.h"
#include "testlib.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static char dir[] = "/var/tmp/drover-imguser-XXXXXX"; /* not tmpfs: user xattrs */
static char top[256], low[256];

static void put(const char *layer, const char *name, const char *text)
{
        char p[512];
        snprintf(p, sizeof(p), "%s/etc", layer);
        drv_mkdir_p(p, 0755, NULL);
        snprintf(p, sizeof(p), "%s/etc/%s", layer, name);
        drv_write_file_atomic(p, text, strlen(text), 0644, NULL);
}

static void setup(void)
{
        if (!mkdtemp(dir))
                abort();
        snprintf(top, sizeof(top), "%s/top", dir);
        snprintf(low, sizeof(low), "%s/low", dir);
        put(low, "passwd",
            "root:x:0:0:root:/root:/bin/sh\n# comment\n"
            "app:x:1000:1001:App:/home/app:/bin/sh\nnohome:x:1002:1002::relative:/bin/sh\n");
        put(low, "group", "root:x:0:\nstaff:x:50:app\n");
        drv_mkdir_p(top, 0755, NULL);
}

TEST(names_ids_and_groups)
{
        char *const layers[] = {top, low, NULL};
        struct rtimg_user u;
        struct drv_error err = {0};
        CHECK(rtimg_resolve_user(layers, "", &u, &err) == 0);
        CHECK(u.uid == 0 && u.gid == 0);
        CHECK_STREQ(u.name, "root");
        CHECK_STREQ(u.home, "/root");
        rtimg_user_release(&u);
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == 0);
        CHECK(u.uid == 1000 && u.gid == 1001);
        CHECK_STREQ(u.home, "/home/app");
        rtimg_user_release(&u);
        CHECK(rtimg_resolve_user(layers, "1000:staff", &u, &err) == 0);
        CHECK(u.uid == 1000 && u.gid == 50);
        CHECK_STREQ(u.name, "app");
        rtimg_user_release(&u);
        CHECK(rtimg_resolve_user(layers, "4242:7", &u, &err) == 0);
        CHECK(u.uid == 4242 && u.gid == 7);
        CHECK_STREQ(u.name, "4242");
        CHECK_STREQ(u.home, "/");
        rtimg_user_release(&u);
        CHECK(rtimg_resolve_user(layers, "nohome", &u, &err) == 0);
        CHECK_STREQ(u.home, "/");
        rtimg_user_release(&u);
        CHECK(rtimg_resolve_user(layers, "nobody", &u, &err) == -ENOENT);
        CHECK(strstr(err.message, "nobody") != NULL);
        CHECK(rtimg_resolve_user(layers, "app:nogroup", &u, &err) == -ENOENT);
        CHECK(rtimg_resolve_user(layers, "70000", &u, &err) == -ERANGE);
}

TEST(top_layer_wins_and_whiteouts_hide)
{
        char *const layers[] = {top, low, NULL};
        struct rtimg_user u;
        struct drv_error err = {0};
        put(top, "passwd", "app:x:2000:2000::/srv/app:/bin/sh\n");
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == 0);
        CHECK(u.uid == 2000);
        CHECK_STREQ(u.home, "/srv/app");
        rtimg_user_release(&u);
        char p[512];
        snprintf(p, sizeof(p), "%s/etc/passwd", top);
        unlink(p);
        CHECK(mknod(p, S_IFCHR | 0600, makedev(0, 0)) == 0);
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == -ENOENT);
        CHECK(rtimg_resolve_user(layers, "0", &u, &err) == 0);
        CHECK_STREQ(u.home, "/root");
        rtimg_user_release(&u);
        /* the top layer removes /etc itself: nothing of a lower /etc counts */
        unlink(p);
        snprintf(p, sizeof(p), "%s/etc", top);
        CHECK(rmdir(p) == 0);
        CHECK(mknod(p, S_IFCHR | 0600, makedev(0, 0)) == 0);
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == -ENOENT);
        unlink(p);
        /* a FIFO as /etc/passwd is not read (and does not block) */
        CHECK(mkdir(p, 0755) == 0);
        snprintf(p, sizeof(p), "%s/etc/passwd", top);
        CHECK(mkfifo(p, 0644) == 0);
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == -ENOENT);
}

TEST(opaque_dir_hides_lower_entries)
{
        char mid[300], p[400];
        snprintf(mid, sizeof(mid), "%s/mid", dir);
        snprintf(p, sizeof(p), "%s/etc", mid);
        CHECK(drv_mkdir_p(p, 0755, NULL) == 0);
        char *const layers[] = {mid, low, NULL};
        struct rtimg_user u;
        struct drv_error err = {0};
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == 0);
        rtimg_user_release(&u);
        CHECK(setxattr(p, "user.overlay.opaque", "y", 1, 0) == 0);
        CHECK(rtimg_resolve_user(layers, "app", &u, &err) == -ENOENT);
}

int main(void)
{
        setup();
        RUN(names_ids_and_groups);
        RUN(top_layer_wins_and_whiteouts_hide);
        RUN(opaque_dir_hides_lower_entries);
        drv_rm_rf(dir, NULL);
        TEST_DONE();
}
